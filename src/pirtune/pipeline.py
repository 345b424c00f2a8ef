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
* ``collect`` — draw ``collect.num_images`` images (uniform classes) from
  ``generator_ckpt``, score them with the objective (the true PIR), show each
  ``collect.impressions`` times to simulated users (clicks ~ Binomial) and
  write the PIR dataset ``pir_data/`` (see ``pirtune.data.pir_dataset``).
* ``estimate`` — fit the PIR estimator on ``pir_data`` (cross-entropy over
  100 PIR bins at temperature 1, C.3), checkpointing to ``estimator_ckpt/``;
  write ``estimator.pt`` and, for the held-out images scored by the frozen
  estimator at ``estimator.temperature``, ``estimator_report.json``.

The PIR-loop stages (``LOOP_STAGES``) of one objective share the run
directory ``runs/<scale>-<objective name>``.
"""

from __future__ import annotations

import dataclasses
import json
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

from pirtune.data.impressions import simulate_clicks
from pirtune.data.pir_dataset import PIRDataModule, write_pir_dataset
from pirtune.errors import UsageError
from pirtune.estimator.module import PIREstimatorModule, evaluate_estimator, save_estimator
from pirtune.models.acgan import (
    STEPS_PER_ITERATION,
    ACGANModule,
    SampleGridCallback,
    class_grid,
    load_bundle,
    render,
    save_bundle,
)
from pirtune.objectives import build_objective

log = logging.getLogger(__name__)

# Checkpoints taken after the optimiser steps are what resuming needs, and the
# pytree notice is Lightning's own; neither is actionable for a user.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

BUNDLE_NAME = "generator.pt"
ESTIMATOR_NAME = "estimator.pt"
LOOP_STAGES = ("collect", "estimate")


def _command_line() -> str:
    """The command that reproduces this run (Hydra's overrides, or argv outside Hydra)."""
    if HydraConfig.initialized():
        return " ".join(["pirtune-train", *HydraConfig.get().overrides.task])
    return " ".join(["pirtune-train", *sys.argv[1:]])


def _already_done(stage: str, output: Path) -> bool:
    """True (and says so) when a stage's final output exists: the stage is skipped."""
    if output.exists():
        log.info("%s: already done (%s); delete it to run the stage again", stage, output)
        return True
    return False


def _require_positive(cfg: DictConfig, section: str, keys: tuple[str, ...]) -> None:
    """Refuse counts below one, naming the setting."""
    for key in keys:
        if cfg[section][key] < 1:
            raise UsageError(f"{section}.{key}={cfg[section][key]} must be at least 1")


def _trainer(cfg: DictConfig, callbacks: list[L.Callback], **limits) -> L.Trainer:
    """The configured Trainer with the stage's callbacks, loggers and progress bar."""
    if cfg.progress:
        callbacks = [*callbacks, RichProgressBar()]
    loggers = [instantiate(spec) for spec in (cfg.get("logger") or {}).values()]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                       enable_progress_bar=bool(cfg.progress), **limits)


def _resume_path(stage: str, checkpoints: Path, explicit: str | None = None) -> str | None:
    """The checkpoint a stage resumes from: ``explicit``, else its own last.ckpt if any."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise UsageError(f"ckpt_path {explicit} does not exist; give a .ckpt from a "
                             "run's checkpoints/ folder, or leave it unset")
        return explicit
    last = checkpoints / "last.ckpt"
    if last.is_file():
        log.info("%s: resuming from %s", stage, last)
        return str(last)
    return None


def pretrain(cfg: DictConfig) -> Path:
    """Train the ACGAN and write ``<run_dir>/generator.pt``; return its path."""
    run_dir = Path(cfg.run_dir)
    bundle_path = run_dir / BUNDLE_NAME
    if cfg.ckpt_path is None and _already_done("pretrain", bundle_path):
        return bundle_path
    _require_positive(cfg, "pretrain", ("iterations", "checkpoint_every", "sample_every"))
    settings = cfg.pretrain

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
    ckpt_path = _resume_path("pretrain", checkpoints, cfg.ckpt_path)
    trainer = _trainer(cfg, callbacks, max_steps=STEPS_PER_ITERATION * settings.iterations)
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


def collect(cfg: DictConfig) -> Path:
    """Score generator samples with simulated users; write ``<run_dir>/pir_data``."""
    out = Path(cfg.pir_data)
    if _already_done("collect", out / "pir.csv"):
        return out
    _require_positive(cfg, "collect", ("num_images", "impressions", "batch_size"))
    settings = cfg.collect
    objective = build_objective(cfg.objective)
    generator, _, meta = load_bundle(cfg.generator_ckpt)
    rng = torch.Generator().manual_seed(settings.seed)
    z = torch.randn(settings.num_images, generator.latent_dim, generator=rng)
    classes = torch.randint(generator.num_classes, (settings.num_images,), generator=rng)
    images = render(generator, z, classes, settings.batch_size)
    true_pir = torch.cat([objective(images[i:i + settings.batch_size])
                          for i in range(0, len(images), settings.batch_size)])
    clicks = simulate_clicks(true_pir, settings.impressions,
                             torch.Generator().manual_seed(settings.seed + 1))
    write_pir_dataset(
        out, (images * 255).round().to(torch.uint8), classes, settings.impressions, clicks,
        true_pir=true_pir, latents=z,
        meta={"objective": objective.describe(), "generator_ckpt": str(cfg.generator_ckpt),
              "generator_iteration": meta.get("iteration"), "seed": settings.seed,
              "impressions": settings.impressions, "command": _command_line()},
    )
    observed = clicks.float() / settings.impressions
    log.info("collect: %d images scored by %s: true PIR %.3f ± %.3f, observed %.3f ± %.3f -> %s",
             len(images), objective.name, true_pir.mean(), true_pir.std(), observed.mean(),
             observed.std(), out)
    return out


def estimate(cfg: DictConfig) -> Path:
    """Fit the PIR estimator on ``cfg.pir_data``; write ``estimator.pt`` and its report."""
    run_dir = Path(cfg.run_dir)
    out = run_dir / ESTIMATOR_NAME
    if _already_done("estimate", out):
        return out
    _require_positive(cfg, "estimator", ("epochs", "batch_size"))
    settings = cfg.estimator
    if not (Path(cfg.pir_data) / "pir.csv").is_file():
        raise UsageError(f"no PIR dataset at {cfg.pir_data}; run stage=collect first, or "
                         "give pir_data=<dataset folder>")
    datamodule = PIRDataModule(str(cfg.pir_data), settings.val_fraction, settings.batch_size,
                               seed=cfg.seed)
    datamodule.setup("fit")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = PIREstimatorModule(instantiate(settings.network), instantiate(settings.optimizer))
    checkpoints = run_dir / "estimator_ckpt"
    ckpt_path = _resume_path("estimate", checkpoints)
    trainer = _trainer(cfg, [ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0)],
                       max_epochs=settings.epochs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if not trainer.is_global_zero:
        return out

    held_out = datamodule.val_records if len(datamodule.val_records) else datamodule.records
    report = evaluate_estimator(module.cpu(), held_out, temperature=settings.temperature)
    for warning in report.warnings:
        log.warning("estimate: %s", warning)
    (run_dir / "estimator_report.json").write_text(
        json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    save_estimator(module, OmegaConf.to_container(settings.network, resolve=True),
                   settings.temperature, out, report=dataclasses.asdict(report))
    log.info("estimate: %s on %d held-out images: MAE %.4f, Spearman %.3f (observed), %s (true); "
             "zero share %.2f -> %s", settings.network.backbone, report.n, report.mae,
             report.spearman_observed,
             "n/a" if report.spearman_true is None else f"{report.spearman_true:.3f}",
             report.zero_share, out)
    return out


STAGES: dict[str, Callable[[DictConfig], Path]] = {
    "pretrain": pretrain, "sample": sample, "collect": collect, "estimate": estimate}


def run(cfg: DictConfig) -> Path:
    """Run ``cfg.stage`` on ``cfg.run_dir``."""
    if cfg.stage not in STAGES:
        raise UsageError(f"stage '{cfg.stage}' is unknown; choose one of: {', '.join(STAGES)}")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"{missing[0]} must be set; add {missing[0]}=<value> to the command")
    return STAGES[cfg.stage](cfg)
