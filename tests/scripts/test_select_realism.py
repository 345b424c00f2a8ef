"""The realism bench's membership test is precision's, sample by sample."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from pirtune.metrics.quality import precision_recall

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "select_realism.py"


def test_precision_members_average_to_precision() -> None:
    spec = importlib.util.spec_from_file_location("select_realism", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(300, 6, generator=generator)
    fake = torch.randn(5000, 6, generator=generator) * 1.3 + 0.4   # more than one chunk
    members = bench.precision_members(real, fake)
    assert members.shape == (5000,) and 0.2 < members.mean() < 0.95
    precision, _ = precision_recall(real, fake)
    assert float(members.mean()) == precision
