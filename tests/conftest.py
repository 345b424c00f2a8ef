"""Shared fixtures: composing the real config tree, tiny and CPU-only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from pirtune import train
from pirtune.compose import register_resolvers
from pirtune.paths import CONFIG_DIR

register_resolvers()
torch.set_num_threads(1)

# A run small enough for seconds on one core: 16×16 images, eighth-width networks.
TINY = [
    "data.resolution=16",
    "data.num_images=32",
    "data.batch_size=8",
    "data.cache_dir=null",
    "model.generator.width=0.125",
    "model.discriminator.width=0.125",
    "logger=csv",
    "progress=false",
    "trainer.log_every_n_steps=1",
    "quality.samples=16",
    "quality.kid_subsets=5",
    "pretrain.quality_samples=16",
    "tune.eval_samples=16",
]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/train.yaml`` with overrides, its run directory under tmp_path."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(
                config_name="train",
                overrides=[f"run_dir={tmp_path / 'run'}", *(TINY if tiny else []), *overrides],
            )

    return _make


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The TINY overrides, for tests that compose or launch outside ``make_cfg``."""
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory, tiny_overrides) -> Path:
    """A TINY generator bundle after two pre-training iterations, shared by the suite."""
    run = tmp_path_factory.mktemp("gan")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train",
                      overrides=[f"run_dir={run}", *tiny_overrides, "stage=pretrain",
                                 "pretrain.iterations=2"])
    return train.run(cfg, "pretrain")
