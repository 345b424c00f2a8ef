"""The whole PIR loop on a tiny generator: rounds, files, the report, resuming, sweeps."""

from __future__ import annotations

import csv
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from scipy import stats

from pirtune import train
from pirtune.data.pir_dataset import read_pir_dataset
from pirtune.errors import UsageError
from pirtune.evaluation import load_evaluations
from pirtune.models.bundle import load_bundle
from pirtune.report import HEADINGS

SECTIONS = list(HEADINGS.values())
# Where the tuning fit builds its trainer.
tune_stage = importlib.import_module("pirtune.tuning.base")


def loop_settings(generator: Path) -> list[str]:
    """A loop of seconds: few images, one estimator epoch, three steps of the paper's tuning
    (the loop's checkpoints and resuming are its)."""
    return [f"generator_ckpt={generator}", "tune=pir", "collect.num_images=24",
            "collect.impressions=50",
            "collect.batch_size=12", "estimator.epochs=1", "estimator.batch_size=8",
            "tune.steps=3", "tune.checkpoint_every=1", "evaluate.num_samples=16",
            "evaluate.batch_size=8"]


def test_two_rounds_write_every_file_and_a_full_report(make_cfg, tiny_generator, capsys):
    cfg = make_cfg("objective=color_red", "iterations=2", *loop_settings(tiny_generator))
    assert cfg.stage == "loop"
    report = train.run(cfg)
    run = Path(cfg.run_dir)
    assert report == run / "report.md"
    assert f"report written to {report}" in capsys.readouterr().out

    for folder in (run, run / "round2"):
        for name in ("pir_data/pir.csv", "estimator.pt", "tuned.pt", "evaluation.json",
                     "eval_before.png", "eval_after.png", "tune_ckpt/last.ckpt"):
            assert (folder / name).is_file(), folder / name
    evaluations = {e.round: e for _, e in load_evaluations(run)}
    assert sorted(evaluations) == [1, 2]
    first, second = evaluations[1], evaluations[2]
    assert first.objective["name"] == "color_red" and first.scale == "cpu"
    assert first.change.n_before == first.change.n_after == 16
    # Both rounds are judged against the untuned generator, with the same fresh latents.
    assert first.generator_before == second.generator_before == str(tiny_generator)
    assert first.change.mean_before == second.change.mean_before
    # Each round's Welch test again, from its own per-image scores.
    for evaluation, folder in ((first, run), (second, run / "round2")):
        with open(folder / "evaluation_scores.csv") as f:
            rows = list(csv.DictReader(f))
        scores = {name: [float(r["true_pir"]) for r in rows if r["set"] == name]
                  for name in ("before", "after")}
        again = stats.ttest_ind(scores["after"], scores["before"], equal_var=False)
        assert evaluation.change.welch.p == pytest.approx(again.pvalue, rel=1e-6)
    assert first.tuning["steps"] == 3

    # Round 2 collected from round 1's tuned generator, and its estimator learned
    # from both rounds' images.
    new = read_pir_dataset(run / "round2" / "pir_data")
    assert new.meta["generator_ckpt"] == str(run / "tuned.pt")
    assert new.image_ids[0] == "r2_000000"
    assert second.training_set.n == 48 and first.training_set.n == 24
    _, _, meta = load_bundle(run / "round2" / "tuned.pt")
    assert meta["provenance"]["tuned_from"] == str(run / "tuned.pt")
    assert meta["iteration"] == 3

    # Quality: the generator before tuning, then each round's tuned generator.
    before = json.loads((run / "quality_base.json").read_text())
    after = {r: json.loads((folder / "quality.json").read_text())
             for r, folder in ((1, run), (2, run / "round2"))}
    assert before["generator"] == str(tiny_generator) and before["round"] == 0
    assert after[1]["generator"] == str(run / "tuned.pt") and after[2]["round"] == 2
    assert before["floor"] == after[1]["floor"] == after[2]["floor"]  # the same real sets

    text = report.read_text()
    positions = [text.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)
    quality = text[text.index(HEADINGS["quality"]):text.index(HEADINGS["2"])]
    assert ("| figure | before tuning | after round 1 | after round 2 | real-vs-real floor |"
            in quality)
    assert (f"| FID | {before['generated']['fid']:.3f} | {after[1]['generated']['fid']:.3f} | "
            f"{after[2]['generated']['fid']:.3f} | {before['floor']['fid']:.3f} |") in quality
    assert "| class acc. mountain |" in quality
    # Realism beside the tilted yardstick, a row per generator: scored, or why not.
    assert "| generator | mean true PIR | precision | FID vs tilted |" in quality
    for name, record in (("before tuning", before), ("after round 1", after[1])):
        row = next(line for line in quality.splitlines() if line.startswith(f"| {name} | "))
        if record["tilted"] is None:
            assert "| n/a | n/a |" in row and record["tilted_note"]
        else:
            assert f"| {record['tilted']['fid']:.3f} |" in row
    assert (run / "report" / "fig6_iterations.png").is_file()
    assert text.count("| color_red | colour / 1 colour |") == 2  # a table row per round
    # Each stage's metrics per round: logs/<stage>/round<r>/ (round 2's apart from round 1's),
    # with the tuning's estimated PIR at every step and the evaluation's figures.
    for index, evaluation in ((1, first), (2, second)):
        with open(run / "logs" / "evaluate" / f"round{index}" / "metrics.csv") as f:
            [logged] = list(csv.DictReader(f))
        assert float(logged["tune/eval/welch_p"]) == pytest.approx(evaluation.change.welch.p,
                                                                   rel=1e-5)
        with open(run / "logs" / "tune" / f"round{index}" / "metrics.csv") as f:
            steps = [row for row in csv.DictReader(f) if row.get("tune/train/estimated_pir")]
        assert len(steps) == 3, index
    assert sorted(p.name for p in (run / "logs" / "estimate").iterdir()) == ["round1", "round2"]


class _Crash(L.Callback):
    """Stops the first tuning run after ``at`` steps, as a killed job would."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.__class__.__name__ == "PIRTuningModule" and pl_module.iteration == self.at:
            raise RuntimeError("killed")


def test_an_interrupted_loop_resumes_where_it_stopped(make_cfg, tiny_generator, monkeypatch,
                                                       caplog):
    cfg = make_cfg("objective=color_green", *loop_settings(tiny_generator), "tune.steps=4")
    real_trainer = tune_stage.gan_trainer
    monkeypatch.setattr(tune_stage, "gan_trainer",
                        lambda run, callbacks, *args: real_trainer(
                            run, [*callbacks, _Crash(2)], *args))
    with pytest.raises(RuntimeError, match="killed"):
        train.run(cfg)
    run = Path(cfg.run_dir)
    assert (run / "estimator.pt").is_file() and (run / "tune_ckpt" / "last.ckpt").is_file()
    assert not (run / "tuned.pt").exists() and not (run / "evaluation.json").exists()
    estimator_stamp = (run / "estimator.pt").stat().st_mtime_ns

    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="pirtune.stages"):
        train.run(cfg)
    messages = caplog.text
    assert "collect: already done" in messages and "estimate: already done" in messages
    assert "tune: resuming from" in messages
    assert (run / "estimator.pt").stat().st_mtime_ns == estimator_stamp
    _, _, meta = load_bundle(run / "tuned.pt")
    assert meta["iteration"] == 4  # two steps before the crash, two after
    assert (run / "evaluation.json").is_file() and (run / "report.md").is_file()


def test_single_stages_and_their_order(make_cfg, tiny_generator):
    cfg = make_cfg("stage=tune", "objective=color_blue", *loop_settings(tiny_generator))
    with pytest.raises(UsageError, match="run stage=estimate first"):
        train.run(cfg)
    with pytest.raises(UsageError, match="run stage=tune first"):
        train.run(cfg, "evaluate")
    with pytest.raises(UsageError, match="round=0 must be at least 1"):
        train.run(make_cfg("round=0", *loop_settings(tiny_generator)), "collect")
    for stage in ("collect", "estimate", "tune"):
        train.run(cfg, stage)
    evaluation = Path(cfg.run_dir) / "evaluation.json"
    assert not evaluation.exists()  # tuning leaves judging to the evaluate stage
    train.run(cfg, "evaluate")
    saved = json.loads(evaluation.read_text())
    assert saved["round"] == 1 and saved["seeds"] == {"seed": 0, "evaluate": 1000}

    # Welch's t again, from the per-image scores beside the evaluation.
    with open(evaluation.parent / saved["scores"]) as f:
        rows = list(csv.DictReader(f))
    scores = {name: [float(r["true_pir"]) for r in rows if r["set"] == name]
              for name in ("before", "after")}
    assert {r["seed"] for r in rows} == {"1000", "1001"} and len(scores["after"]) == 16
    again = stats.ttest_ind(scores["after"], scores["before"], equal_var=False)
    assert saved["change"]["welch"]["t"] == pytest.approx(again.statistic, rel=1e-6)
    assert saved["change"]["welch"]["p"] == pytest.approx(again.pvalue, rel=1e-6)


def test_a_sweep_over_two_seeds_writes_two_runs_and_one_report(tiny_generator, tmp_path,
                                                                tiny_overrides):
    # The run directories' default place (no run_dir=): $PIRTUNE_HOME/runs/<name>.
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "pirtune.train", "-m", "hydra/launcher=local", "seed=0,1",
         "objective=color_red", f"hydra.sweep.dir={sweep}", *tiny_overrides,
         *loop_settings(tiny_generator)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PIRTUNE_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "runs").glob("cpu-color_red-*"))
    assert len(runs) == 2
    # Each job folder links its own run, which holds that job's seed and results.
    linked = {int(job): (sweep / job / "run").resolve() for job in ("0", "1")}
    assert sorted(linked.values()) == runs
    for seed, run in linked.items():
        assert read_pir_dataset(run / "pir_data").meta["seed"] == seed
    first, second = (read_pir_dataset(run / "pir_data").true_pir for run in runs)
    assert not torch.equal(first, second)
    evaluations = [e for run in runs for _, e in load_evaluations(run)]
    assert len(evaluations) == 2
    assert evaluations[0].change.mean_after != evaluations[1].change.mean_after
    # The sweep's report covers both runs.
    text = (sweep / "report.md").read_text()
    assert all(run.name in text for run in runs)
    assert all(heading in text for heading in SECTIONS)


def test_the_loop_runs_under_ddp_on_two_cpu_processes(tiny_generator, tmp_path, tiny_overrides):
    # A subprocess, because DDP's extra process re-runs the command line.
    run = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "pirtune.train", "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.devices=2", "trainer.precision=32-true", f"run_dir={run}", *tiny_overrides,
         *loop_settings(tiny_generator)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, _, meta = load_bundle(run / "tuned.pt")
    assert meta["iteration"] == 3
    [(_, evaluation)] = load_evaluations(run)
    assert evaluation.change.n_after == 16
    assert (run / "report.md").is_file()


def test_optuna_searches_the_tuning_for_cohens_d(tiny_generator, tmp_path, tiny_overrides):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "pirtune.train", "hparams_search=tune_optuna",
         "hydra.sweeper.n_trials=2", "objective=color_red", f"run_dir={tmp_path}/runs/${{name}}",
         f"hydra.sweep.dir={sweep}", *tiny_overrides,
         *(s for s in loop_settings(tiny_generator) if not s.startswith("tune.steps=")),
         "tune.steps=choice(2,3)", "tune.w_pir=interval(1,100)"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    # Each trial's tuning settings are in its run's name (its hash).
    assert len(runs) == 2 and all(run.startswith("cpu-color_red-") for run in runs)
    # The sweeper saw each trial's Cohen's d (the main function's return value).
    d = {json.loads((tmp_path / "runs" / run / "evaluation.json").read_text())
         ["change"]["cohens_d"] for run in runs}
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(d))
    assert set(best["best_params"]) == {"tune.steps", "tune.w_pir", "tune.lr"}


def test_the_loop_without_quality_skips_only_the_quality_files(make_cfg, tiny_generator):
    """quality.in_loop=false: the same run directory, evaluation and report, no quality files."""
    cfg = make_cfg("objective=color_red", "quality.in_loop=false", *loop_settings(tiny_generator))
    with_quality = make_cfg("objective=color_red", *loop_settings(tiny_generator))
    assert cfg.name == with_quality.name  # whether the loop scores quality changes no result
    report = train.run(cfg)
    run = Path(cfg.run_dir)
    assert (run / "evaluation.json").is_file() and report.is_file()
    assert not (run / "quality_base.json").exists() and not (run / "quality.json").exists()
    assert "No quality.json was found" in report.read_text()
