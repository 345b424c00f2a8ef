"""W&B offline: one finished run per stage and round, with config, media, tables, artifacts."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from pirtune import train
from tests.wandb_records import offline_runs

tune_stage = importlib.import_module("pirtune.tuning.base")

LOOP = ["tune=pir", "collect.num_images=24", "collect.impressions=50", "collect.batch_size=12",
        "estimator.epochs=1", "estimator.batch_size=8", "tune.steps=4", "tune.checkpoint_every=1",
        "evaluate.num_samples=16", "evaluate.batch_size=8"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """W&B offline, its caches and settings under tmp_path."""
    for key, folder in [("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"),
                        ("WANDB_CONFIG_DIR", "config"), ("WANDB_ARTIFACT_DIR", "artifacts")]:
        monkeypatch.setenv(key, str(tmp_path / folder))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


class _Crash(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == 2:
            raise RuntimeError("killed")


def test_every_stage_and_round_is_its_own_finished_run(make_cfg, tmp_path, offline,
                                                       monkeypatch):
    gan = make_cfg("logger=default", "stage=pretrain", "pretrain.iterations=2",
                   "pretrain.sample_every=1",
                   f"run_dir={tmp_path}/${{name}}")  # the folder its name gives
    generator = train.run(gan, "pretrain")
    cfg = make_cfg("logger=default", "objective=color_red", "iterations=2",
                   f"generator_ckpt={generator}", *LOOP)
    real_trainer = tune_stage.gan_trainer
    monkeypatch.setattr(tune_stage, "gan_trainer", lambda run, callbacks, *args:
                        real_trainer(run, [*callbacks, _Crash()], *args))
    with pytest.raises(RuntimeError, match="killed"):
        train.run(cfg)  # killed in round 1's tuning
    monkeypatch.undo()
    for key in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        os.environ[key] = str(tmp_path / key)
    train.run(cfg)

    [pretrain] = offline_runs(Path(gan.run_dir) / "wandb")
    assert (pretrain.job_type, pretrain.group) == ("pretrain", gan.name)
    assert {"pretrain/train/d_loss", "pretrain/samples"} <= pretrain.history_keys
    assert pretrain.config["params/generator"] > 0 and pretrain.config["pretrain"]["iterations"]
    assert [(t, a[1]) for t, *a in [(r.job_type, *x) for r in [pretrain] for x in r.artifacts]] \
        == [("pretrain", "generator")]
    generator_artifact = pretrain.artifacts[0][0]

    runs = offline_runs(Path(cfg.run_dir) / "wandb")
    assert all(r.finished and r.group == cfg.name for r in runs)
    # Every metric's x-axis is the stage's iteration, which the tracker logs.
    assert all(r.step_metrics.get("*") == "trainer/global_step" for r in [pretrain, *runs])
    by_stage: dict[tuple[str, str], list] = {}
    for r in runs:
        rnd = next((t for t in r.tags if t.startswith("round:")), "")
        by_stage.setdefault((r.job_type, rnd), []).append(r)
        assert {"scale:cpu", "objective:color_red", f"stage:{r.job_type}"} <= set(r.tags)
    expected = {(stage, f"round:{i}") for stage in ("collect", "estimate", "tune", "evaluate",
                                                    "quality")
                for i in (1, 2)} | {("report", ""), ("quality", "")}  # "": before tuning
    assert set(by_stage) == expected
    # The killed tuning resumed in its own W&B run: two folders, one id.
    first_tune = by_stage["tune", "round:1"]
    assert len(first_tune) == 2 and len({r.id for r in first_tune}) == 1
    ids = {r.id for r in runs}
    assert len(ids) == len(expected)

    collect = by_stage["collect", "round:1"][0]
    assert "collect/images" in collect.history_keys or any(
        "collect/images" in f for f in collect.files)
    assert any(f.startswith("media/table/collect/images") for f in collect.files)
    estimate = by_stage["estimate", "round:2"][0]
    assert any(f.startswith("media/table/estimate/images") for f in estimate.files)
    assert "params/estimator" in estimate.config and estimate.config["estimate"]["seed"] == 0
    tune = by_stage["tune", "round:1"][-1]
    assert "tune/train/estimated_pir" in tune.history_keys
    evaluate = by_stage["evaluate", "round:2"][0]
    assert {"tune/eval/cohens_d", "tune/eval/welch_p", "evaluate/samples"} \
        <= evaluate.history_keys
    quality = by_stage["quality", "round:2"][0]
    assert {"quality/generated/fid", "quality/floor/recall"} <= quality.history_keys
    assert any(f.startswith("media/table/quality/figures") for f in quality.files)
    report = by_stage["report", ""][0]
    assert {"report/fig2", "report/fig6"} <= report.history_keys

    def artifacts(stage: str, rnd: str) -> list[tuple[str, str, dict]]:
        return [a for r in by_stage[stage, rnd] for a in r.artifacts if a[1] != "run_table"]

    [(data1, kind, _)] = artifacts("collect", "round:1")
    assert kind == "pir-dataset" and data1 == f"{cfg.name}-pir_data"
    [(data2, _, meta)] = artifacts("collect", "round:2")
    assert meta["inputs"] == [f"{cfg.name}-tuned"]
    [(estimator2, kind, meta)] = artifacts("estimate", "round:2")
    assert kind == "estimator" and meta["inputs"] == [data1, data2]
    [(tuned1, kind, meta)] = artifacts("tune", "round:1")
    assert (tuned1, kind) == (f"{cfg.name}-tuned", "generator")
    assert meta["inputs"] == [generator_artifact, f"{cfg.name}-estimator"]
    [(_, _, meta)] = artifacts("tune", "round:2")
    assert meta["inputs"] == [tuned1, estimator2]


def test_a_sequential_sweep_gives_one_group_per_job(tiny_generator, tmp_path, tiny_overrides,
                                                    offline):
    result = subprocess.run(
        [sys.executable, "-m", "pirtune.train", "-m", "objective=color_red,color_blue",
         f"run_dir={tmp_path}/runs/${{name}}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         *tiny_overrides, "logger=default", f"generator_ckpt={tiny_generator}",
         *LOOP, "tune.steps=2"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    groups = {}
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert [name.rsplit("-", 1)[0] for name in names] == ["cpu-color_blue", "cpu-color_red"]
    for name in names:
        runs = offline_runs(tmp_path / "runs" / name / "wandb")
        assert sorted(r.job_type for r in runs) == ["collect", "estimate", "evaluate", "quality",
                                                    "quality", "report", "tune"]
        groups[name] = {r.group for r in runs}
    assert groups == {name: {name} for name in names}


def test_a_stage_prints_no_wandb_notice_nobody_can_act_on(tiny_generator, tmp_path,
                                                          tiny_overrides, offline):
    # Not silenced by WANDB_SILENT: W&B's own console output is what is checked.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}
    result = subprocess.run(
        [sys.executable, "-m", "pirtune.train", "stage=collect", f"run_dir={tmp_path / 'run'}",
         *tiny_overrides, "logger=default", f"generator_ckpt={tiny_generator}", *LOOP],
        capture_output=True, text=True, timeout=300, env={**env, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "collect:" in console  # the stage's own line is there
    assert "anonymous setting" not in console
    assert "Adding directory to artifact" not in console
    [run] = offline_runs(tmp_path / "run" / "wandb")
    [(name, kind)] = [a[:2] for a in run.artifacts if a[1] != "run_table"]
    assert kind == "pir-dataset" and re.fullmatch(r"cpu-color_blue-[0-9a-f]{8}-pir_data", name)
