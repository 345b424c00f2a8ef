"""Logs of several generators: each session is rendered by the generator that served it."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from pirtune.data.pir_dataset import read_pir_dataset
from pirtune.errors import UsageError
from pirtune.models.bundle import load_bundle, render
from pirtune.webapp import InteractionLog, export_pir_dataset
from pirtune.webapp.export import bundle_sha256, find_generators


@pytest.fixture
def two_generators(tiny_generator, tmp_path) -> tuple[Path, Path]:
    """The tiny generator and a copy with other weights, in a folder of their own."""
    folder = tmp_path / "bundles"
    folder.mkdir()
    bundle = torch.load(tiny_generator, weights_only=False)
    other = folder / "tuned.pt"
    bundle["generator"] = {k: v + 0.05 if v.is_floating_point() else v
                           for k, v in bundle["generator"].items()}
    torch.save(bundle, other)
    return Path(tiny_generator), other


def test_each_session_is_rendered_by_its_own_generator(two_generators, tmp_path):
    first, second = two_generators
    gen_a, _, _ = load_bundle(first)
    latents = torch.randn(4, gen_a.latent_dim, generator=torch.Generator().manual_seed(0))
    log = InteractionLog(tmp_path / "log.db")
    sessions = {}
    for bundle, pick in ((first, 1), (second, 2)):
        sid = log.create_session("preference", 0, {}, generator=bundle_sha256(bundle))
        log.record_shown(sid, 1, latents.tolist(), 0)
        log.record_choice(sid, 1, pick)
        sessions[sid] = bundle
    found = find_generators(log, [first, second.parent])
    assert found == {bundle_sha256(first): first, bundle_sha256(second): second}
    out = export_pir_dataset(log, tmp_path / "pir_data",
                             {c: load_bundle(p)[0] for c, p in found.items()})
    records = read_pir_dataset(out)
    # The same four latents under two generators: eight images, one impression each.
    assert len(records) == 8 and records.impressions.tolist() == [1] * 8
    with open(out / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    index = {image_id: i for i, image_id in enumerate(records.image_ids)}
    for row in rows:
        bundle = sessions[row["session_id"]]
        assert row["generator"] == bundle_sha256(bundle)
        expected = render(load_bundle(bundle)[0], latents, torch.zeros(4, dtype=torch.long))
        shown = records.images[[index[row[f"slot{k}"]] for k in range(4)]]
        torch.testing.assert_close(shown, (expected * 255).round().to(torch.uint8))
        picked = index[row[f"slot{row['picked']}"]]
        assert records.positives[picked] == 1
    assert records.positives.sum() == 2


def test_a_missing_generator_is_named_with_the_fix(two_generators, tmp_path):
    first, second = two_generators
    log = InteractionLog(tmp_path / "log.db")
    sid = log.create_session("preference", 0, {}, generator=bundle_sha256(second))
    with pytest.raises(UsageError, match=re.escape(
            f"session {sid} was served by the generator with sha256 {bundle_sha256(second)}, "
            f"which is none of the generators given ({first}); pass its bundle too")):
        find_generators(log, [first])
    with pytest.raises(UsageError, match="generator /nowhere.pt does not exist"):
        find_generators(log, [Path("/nowhere.pt")])
    # A log from before sessions kept their generator: the first bundle given.
    old = InteractionLog(tmp_path / "old.db")
    old.create_session("preference", 0, {})
    assert find_generators(old, [second, first]) == {None: second}
