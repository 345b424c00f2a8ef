"""scripts/ship_generator.py, the `make run` fallback: a bundle and its reproduction record."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import yaml

from pirtune.models.bundle import load_bundle

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"


def test_ship_generator_copies_the_bundle_and_writes_how_to_make_it_again(
        tiny_generator, tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("ship_generator", SCRIPT)
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    out = tmp_path / "checkpoints" / "acgan-test.pt"
    monkeypatch.setattr(sys, "argv", ["ship_generator.py", str(tiny_generator), str(out),
                                      "--notes", "Shipped by a test."])
    ship.main()

    assert out.read_bytes() == tiny_generator.read_bytes()
    digest = hashlib.sha256(tiny_generator.read_bytes()).hexdigest()
    assert f"shipped {out} (sha256 {digest})" in capsys.readouterr().out
    _, _, meta = load_bundle(out)
    provenance = meta["provenance"]
    text = out.with_suffix(".md").read_text()
    assert text.startswith("# acgan-test.pt\n")
    for line in (f"- command: `{provenance['command']}`", f"- seed: {provenance['seed']}",
                 f"- iterations: {meta['iteration']} (one D and one G update each)",
                 f"- torch {provenance['torch']}, Python {provenance['python']}",
                 f"- sha256: `{digest}`", "Shipped by a test."):
        assert line in text, line
    assert meta["iteration"] == 2  # the suite's generator: two iterations
    # The resolved config in the record builds the same model and data.
    config = yaml.safe_load(text.split("```yaml\n")[1].split("```")[0])
    assert config == {"model": meta["model"], "data": provenance["data"]}
