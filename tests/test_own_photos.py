"""Own photos end to end: pre-train on an ImageFolder under its own run, the loop on that
generator, the web app on it, its log exported and learned from."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_dir
from PIL import Image

from pirtune import train
from pirtune.errors import UsageError
from pirtune.evaluation import load_evaluations
from pirtune.models.bundle import load_bundle
from pirtune.paths import CONFIG_DIR
from pirtune.stages import STAGES, naming
from pirtune.webapp import export, serve

CLASSES = ("beach", "forest")
# Settings of seconds; num_workers only changes how the photos load, not the run's name.
QUICK = ["data.num_workers=0", "pretrain.iterations=2", "collect.num_images=24",
         "collect.impressions=50", "collect.batch_size=12", "estimator.epochs=1",
         "estimator.batch_size=8", "tune.steps=2", "tune.checkpoint_every=1",
         "evaluate.num_samples=16", "evaluate.batch_size=8"]


@pytest.fixture
def photos(tmp_path) -> Path:
    """2 classes × 16 PNGs of 32 px: warm bright scenes and cool dark ones, with noise."""
    root = tmp_path / "my_photos"
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        base = np.array([200, 170, 90]) if index == 0 else np.array([30, 90, 40])
        for i in range(16):
            pixels = np.clip(base + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture
def compose_cfg(tmp_path, monkeypatch, tiny_overrides):
    """Compose like ``pirtune-train`` with $PIRTUNE_HOME in tmp_path (run dirs by name)."""
    monkeypatch.setenv("PIRTUNE_HOME", str(tmp_path))

    def _compose(*overrides: str, tiny: bool = True):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name="train",
                           overrides=[*(tiny_overrides if tiny else []), *overrides])

    return _compose


def test_own_photos_pretrain_loop_serve_export_estimate(photos, compose_cfg, tmp_path,
                                                       monkeypatch):
    data = ["data=imagefolder", f"data.root={photos}"]
    # 1. pirtune-train data=imagefolder data.root=DIR stage=pretrain
    cfg = compose_cfg(*data, "stage=pretrain", *QUICK)
    assert cfg.data.num_classes == 2  # from the folder's sub-folders
    assert re.fullmatch(r"cpu-pretrain-my_photos-[0-9a-f]{8}", cfg.name)
    assert cfg.name != compose_cfg("stage=pretrain", *QUICK).name  # not the landscapes' run
    generator_path = train.run(cfg)
    assert generator_path == tmp_path / "runs" / cfg.name / "generator.pt"
    _, _, meta = load_bundle(generator_path)
    assert meta["provenance"]["data"]["root"] == str(photos)
    stamp = generator_path.stat().st_mtime_ns

    # 2. pirtune-train data=imagefolder data.root=DIR: the loop on that generator.
    loop = compose_cfg(*data, *QUICK)
    assert loop.generator_ckpt == str(generator_path)
    report = train.run(loop)
    assert report.is_file()
    assert generator_path.stat().st_mtime_ns == stamp  # not pre-trained again
    [(_, evaluation)] = load_evaluations(Path(loop.run_dir))
    assert evaluation.generator_before == str(generator_path)

    # 3. pirtune-serve --checkpoint <that generator>: the real CLI, its app under TestClient.
    db = tmp_path / "runs" / "webapp" / "interactions.db"
    apps = []
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **_: apps.append(app))
    serve.main(["--checkpoint", str(generator_path), "--db", str(db)])
    client = TestClient(apps[0])
    assert client.get("/api/info").json()["classes"] == list(CLASSES)  # the folder's names
    session = client.post("/api/sessions", json={"image_class": 1, "seed": 0}).json()
    for round_ in (1, 2, 3):
        state = client.post(f"/api/sessions/{session['session_id']}/choices",
                            json={"round": round_, "index": round_ % 4})
        assert state.status_code == 200, state.text

    # 4. pirtune-export --db DB --out OUT --checkpoint <that generator>
    out = tmp_path / "runs" / "webapp" / "pir_data"
    export.main(["--db", str(db), "--out", str(out), "--checkpoint", str(generator_path)])
    # 5. pirtune-train stage=estimate data=interactions data.path=OUT generator_ckpt=<generator>
    estimate = compose_cfg("stage=estimate", "data=interactions", f"data.path={out}",
                           f"generator_ckpt={generator_path}", "data.resolution=16",
                           "estimator.epochs=1", "estimator.batch_size=4", "logger=csv",
                           "progress=false", tiny=False)
    assert re.fullmatch(r"cpu-interactions-[0-9a-f]{8}", estimate.name)
    estimator = train.run(estimate)
    assert estimator == tmp_path / "runs" / estimate.name / "estimator.pt"
    assert estimator.is_file()


def test_the_loop_pretrains_a_missing_photo_generator_first(photos, compose_cfg, monkeypatch):
    ran = []
    monkeypatch.setitem(STAGES, "loop", lambda cfg, run: ran.append(cfg.generator_ckpt)
                        or run.dir)
    loop = compose_cfg("data=imagefolder", f"data.root={photos}", *QUICK)
    assert train.run(loop) == Path(loop.run_dir)
    pretrained = naming.pretrained_generator(loop)
    assert ran == [str(pretrained)] and pretrained.is_file()
    assert pretrained.parent.name.startswith("cpu-pretrain-my_photos-")


def test_a_single_stage_names_the_pretraining_command_it_needs(photos, compose_cfg, monkeypatch):
    args = ["stage=collect", "data=imagefolder", f"data.root={photos}"]
    monkeypatch.setattr(sys, "argv", ["pirtune-train", *args])
    cfg = compose_cfg(*args)
    expected = naming.pretrained_generator(cfg)
    with pytest.raises(UsageError, match=re.escape(
            f"generator_ckpt {expected} does not exist; pre-train it first with "
            f"`pirtune-train stage=pretrain data=imagefolder data.root={photos}`, or give "
            "generator_ckpt=<a generator bundle>")):
        train.run(cfg)
    assert not expected.exists()


def test_a_folder_of_three_classes_makes_a_three_class_model(tmp_path, compose_cfg):
    for name in ("a", "b", "c"):
        (tmp_path / "three" / name).mkdir(parents=True)
    cfg = compose_cfg("data=imagefolder", f"data.root={tmp_path / 'three'}")
    assert cfg.data.num_classes == cfg.model.generator.num_classes == 3
    given = compose_cfg("data=imagefolder", f"data.root={tmp_path / 'three'}",
                        "data.num_classes=4")
    assert given.data.num_classes == 4 and given.name != cfg.name


def test_a_sweep_job_names_the_pretraining_instead_of_racing_for_it(photos, compose_cfg,
                                                                    monkeypatch):
    # Parallel jobs would pre-train one generator at once: each job refuses instead.
    args = ["data=imagefolder", f"data.root={photos}", "seed=1"]
    monkeypatch.setattr(sys, "argv", ["pirtune-train", *args])
    monkeypatch.setattr(train, "_multirun", lambda: True)
    cfg = compose_cfg(*args)
    with pytest.raises(UsageError, match=re.escape(
            f"pre-train it first with `pirtune-train stage=pretrain {' '.join(args)}`")):
        train.run(cfg)
    assert not naming.pretrained_generator(cfg).exists()
