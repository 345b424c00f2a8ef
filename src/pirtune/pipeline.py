"""The stages of pirtune as functions over a run directory.

Every stage reads its inputs from, and writes its outputs to, ``cfg.run_dir``
(or a named checkpoint), so a stage can be re-run or resumed alone:

* ``pretrain`` — train the ACGAN on ``data``; Lightning checkpoints go to
  ``checkpoints/`` (``last.ckpt`` and periodic ones), sample grids to
  ``samples/``, and the finished networks to ``generator.pt`` (a bundle, see
  ``pirtune.models.acgan``). Running it again resumes from ``last.ckpt``;
  once ``generator.pt`` exists the stage is done and is skipped.
* ``sample`` — draw a class-by-class grid from ``generator_ckpt`` into
  ``samples.png``.
"""

from __future__ import annotations

import logging
import platform
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from pirtune.errors import UsageError
from pirtune.models.acgan import (
    STEPS_PER_ITERATION,
    ACGANModule,
    SampleGridCallback,
    class_grid,
    load_bundle,
    save_bundle,
)

log = logging.getLogger(__name__)

# Checkpoints taken after the optimiser steps are what resuming needs, and the
# pytree notice is Lightning's own; neither is actionable for a user.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

BUNDLE_NAME = "generator.pt"


def _command_line() -> str:
    """The command that reproduces this run (Hydra's overrides, or argv outside Hydra)."""
    if HydraConfig.initialized():
        return " ".join(["pirtune-train", *HydraConfig.get().overrides.task])
    return " ".join(["pirtune-train", *sys.argv[1:]])


def _loggers(cfg: DictConfig) -> list:
    return [instantiate(spec) for spec in (cfg.get("logger") or {}).values()]


def pretrain(cfg: DictConfig) -> Path:
    """Train the ACGAN and write ``<run_dir>/generator.pt``; return its path."""
    run_dir = Path(cfg.run_dir)
    bundle_path = run_dir / BUNDLE_NAME
    if bundle_path.exists() and cfg.ckpt_path is None:
        log.info("pretrain: already done (%s); delete it or set run_dir to train again",
                 bundle_path)
        return bundle_path
    settings = cfg.pretrain
    for key in ("iterations", "checkpoint_every", "sample_every"):
        if settings[key] < 1:
            raise UsageError(f"pretrain.{key}={settings[key]} must be at least 1")

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")  # a bad folder fails here, before any training output
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module: ACGANModule = instantiate(cfg.model)
    checkpoints = run_dir / "checkpoints"
    callbacks: list[L.Callback] = [
        # Periodic checkpoints are all kept, and last.ckpt beside them for resuming.
        ModelCheckpoint(dirpath=checkpoints, filename="{step}", save_top_k=-1, save_last=True,
                        every_n_train_steps=STEPS_PER_ITERATION * settings.checkpoint_every),
        SampleGridCallback(run_dir / "samples", settings.sample_every, settings.sample_per_class,
                           seed=cfg.seed),
    ]
    if cfg.progress:
        callbacks.append(RichProgressBar())
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=STEPS_PER_ITERATION * settings.iterations,
        callbacks=callbacks,
        logger=_loggers(cfg),
        enable_progress_bar=bool(cfg.progress),
    )
    ckpt_path = cfg.ckpt_path
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise UsageError(f"ckpt_path {ckpt_path} does not exist; give a .ckpt from a "
                         "run's checkpoints/ folder, or leave it unset")
    if ckpt_path is None and (checkpoints / "last.ckpt").is_file():
        ckpt_path = str(checkpoints / "last.ckpt")
        log.info("pretrain: resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    if trainer.is_global_zero:
        digest = save_bundle(
            module, cfg.model, bundle_path,
            command=_command_line(),
            seed=cfg.seed,
            iterations=module.iteration,
            data=OmegaConf.to_container(cfg.data, resolve=True),
            torch=torch.__version__,
            python=platform.python_version(),
        )
        log.info("pretrain: wrote %s (sha256 %s) after %d iterations", bundle_path, digest,
                 module.iteration)
    return bundle_path


def sample(cfg: DictConfig) -> Path:
    """Write a class-by-class sample grid of ``generator_ckpt`` to ``<run_dir>/samples.png``."""
    generator, _, meta = load_bundle(cfg.generator_ckpt)
    images = class_grid(generator, cfg.sample.per_class, seed=cfg.sample.seed)
    out = Path(cfg.run_dir) / "samples.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, out, nrow=8, padding=1)
    log.info("sample: %s (generator %s after %d iterations; one class after another)", out,
             cfg.generator_ckpt, meta.get("iteration", -1))
    print(f"samples written to {out}")
    return out


STAGES: dict[str, Callable[[DictConfig], Path]] = {"pretrain": pretrain, "sample": sample}


def run(cfg: DictConfig) -> Path:
    """Run ``cfg.stage`` on ``cfg.run_dir``."""
    if cfg.stage not in STAGES:
        raise UsageError(f"stage '{cfg.stage}' is unknown; choose one of: {', '.join(STAGES)}")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"{missing[0]} must be set; add {missing[0]}=<value> to the command")
    return STAGES[cfg.stage](cfg)
