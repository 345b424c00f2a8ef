"""A tiny run after collect and estimate, and tuned copies of it, for the methods' tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pirtune import train
from pirtune.paths import CONFIG_DIR

LOOP = ["collect.num_images=24", "collect.impressions=50", "collect.batch_size=12",
        "estimator.epochs=1", "estimator.batch_size=8", "tune.steps=3",
        "tune.checkpoint_every=1", "evaluate.num_samples=16", "evaluate.batch_size=8"]


def _compose(run_dir: Path, overrides: list[str], generator: Path, tiny: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[f"run_dir={run_dir}", *tiny,
                                                       f"generator_ckpt={generator}", *LOOP,
                                                       *overrides])


@pytest.fixture(scope="module")
def estimated(tmp_path_factory, tiny_generator, tiny_overrides) -> Path:
    """A run directory after collect and estimate (the tiny generator, color_blue)."""
    run = tmp_path_factory.mktemp("estimated") / "run"
    cfg = _compose(run, [], tiny_generator, tiny_overrides)
    train.run(cfg, "collect")
    train.run(cfg, "estimate")
    return run


@pytest.fixture
def tune_copy(tmp_path, estimated, tiny_generator, tiny_overrides):
    """``tune_copy(*overrides)``: tune a copy of ``estimated``; the tuned bundle's path."""

    def _tune(*overrides: str) -> Path:
        run = tmp_path / "run"
        shutil.copytree(estimated, run)
        cfg = _compose(run, list(overrides), tiny_generator, tiny_overrides)
        return train.run(cfg, "tune")

    return _tune
