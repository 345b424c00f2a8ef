"""The claims bench's plan, its resumability and README markers, and its --smoke run."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "claims.py"


def _bench():
    spec = importlib.util.spec_from_file_location("claims_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_plan_covers_the_papers_design():
    bench = _bench()
    objectives = bench.plan(seeds=1, smoke=False)
    names = [o.name for o in objectives]
    assert names[:6] == list(bench.COLOURS)
    assert len(objectives) == 6 + 8 * 2
    assert {o.name for o in objectives if o.rounds == 2} == {"vgg_pool2_k1_s0", "vgg_fc8_k1_s0"}
    assert len(bench.plan(seeds=2, smoke=False)) == 6 + 8 * 2 * 2
    assert len(bench.jobs(objectives, ["paper", "select"])) == 44


def test_sweeps_group_vgg_objectives_by_k_and_seed():
    bench = _bench()
    objectives = [bench.Objective("color_blue"), bench.Objective("vgg_pool1", 1, 0),
                  bench.Objective("vgg_fc8", 1, 0), bench.Objective("vgg_pool1", 20, 1)]
    sweeps = dict(bench._sweeps(objectives))
    assert sweeps["colour"] == ["objective=color_blue"]
    assert sweeps["k1-s0"][:3] == ["objective=vgg_pool1,vgg_fc8", "objective.k=1",
                                  "objective.seed=0"]
    assert sweeps["k20-s1"][0] == "objective=vgg_pool1"


def test_a_job_is_done_when_its_last_round_is_evaluated(tmp_path):
    bench = _bench()
    twice = bench.Objective("vgg_pool2", 1, 0, rounds=2)
    folder = tmp_path / "jobs" / "cpu-vgg_pool2_k1_s0" / "paper"
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text("{}")
    assert not bench.job_done(tmp_path, twice, "paper")
    (folder / "round2").mkdir()
    (folder / "round2" / "evaluation.json").write_text("{}")
    assert bench.job_done(tmp_path, twice, "paper")


def test_the_readme_section_is_replaced_between_its_markers(tmp_path):
    bench = _bench()
    readme = tmp_path / "README.md"
    readme.write_text("# pirtune\n\nintro\n")
    bench.write_readme([bench.START, "first", bench.END], readme)
    assert readme.read_text().count("## Does the paper reproduce?") == 1
    bench.write_readme([bench.START, "second", bench.END], readme)
    text = readme.read_text()
    assert "second" in text and "first" not in text and text.startswith("# pirtune\n\nintro")


@pytest.mark.slow
def test_the_smoke_run_writes_a_verdict_per_claim_and_method(tmp_path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with (tmp_path / "claims.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {(r["claim"], r["method"]) for r in rows} == {
        (str(n), m) for n in range(1, 11) for m in ("gradient", "select")}
    assert (tmp_path / "claims.png").is_file()
    assert "## Verdicts" in (tmp_path / "claims.md").read_text()
