"""The crowd benchmark's verdicts on planted rows, and its --smoke run end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "crowd.py"


def _bench():
    spec = importlib.util.spec_from_file_location("crowd_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(seed: int, picks: int, d: float, ratio: float = 1.0, precision: float = 0.85) -> dict:
    return {"seed": seed, "picks": picks, "cohens_d": d, "ratio": ratio,
            "precision": precision, "precision_base": 0.86}


def test_verdicts_name_each_miss_with_its_figures() -> None:
    verdicts = _bench().verdicts([
        _row(0, 250, 0.9), _row(0, 500, 1.1), _row(0, 1000, 0.9, ratio=2.5),
        _row(0, 2000, 1.4, precision=0.80),
        _row(1, 250, 0.8), _row(1, 500, 1.0), _row(1, 1000, 1.2), _row(1, 2000, 1.3)])
    text = "\n".join(verdicts)
    assert "crowd 0, d never falls by more than 0.15 from one budget to the next: missed " \
           "(500 → 1000 picks: -0.20)" in text
    assert "crowd 0, d ≥ 1.0 from 500 picks: missed (1000: 0.90)" in text
    assert "crowd 0, precision ≥ untuned − 0.05 at every budget: missed (2000: 0.800 vs 0.860)" \
        in text
    assert "crowd 0, predicted Δ within 2× of the true Δ: missed (1000: ratio 2.50)" in text
    assert [v.split(": ", 1)[1] for v in verdicts if v.startswith("crowd 1")] == ["met"] * 5


def test_a_budget_never_run_is_not_called_met() -> None:
    verdicts = _bench().verdicts([_row(0, 8, 0.1, precision=float("nan")), _row(0, 16, 0.2)])
    assert "crowd 0, d ≥ 1.3 from 2000 picks: not measured (no budget that large)" in verdicts


def test_other_overrides_get_their_own_runs() -> None:
    bench = _bench()
    assert bench.variant([], smoke=False) == ""
    assert bench.variant(bench.SMOKE, smoke=True) == ""
    one = bench.variant(["tune=pir_anchored", "estimator.calibrate=false"], smoke=False)
    assert one == bench.variant(["estimator.calibrate=false", "tune=pir_anchored"], smoke=False)
    assert one != bench.variant(["tune=pir_anchored"], smoke=False) and len(one) == 7


@pytest.mark.slow
def test_the_smoke_run_writes_its_table(tmp_path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True,
                         text=True, check=True, timeout=900).stdout
    folder = Path(out.rsplit("logs and runs stay in ", 1)[1].strip())
    with open(folder / "crowd.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["picks"]) for r in rows] == [8, 16]
    saved = json.loads((folder / "row-crowd-s0-16.json").read_text())
    assert float(rows[1]["ratio"]) == pytest.approx(saved["predicted_delta"] / saved["delta"])
    assert (folder / "crowd.png").is_file() and (folder / "crowd_human_loop.png").is_file()
    assert "Targets:" in (folder / "crowd.md").read_text()
