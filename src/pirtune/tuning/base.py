"""What every tuning method gets, and the fit that the trained methods share."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.models.acgan import STEPS_PER_ITERATION
from pirtune.models.bundle import load_bundle, save_bundle
from pirtune.models.watch import TuningWatchCallback
from pirtune.objectives import build_objective
from pirtune.stages.config import TuneConfig
from pirtune.stages.rundir import Round
from pirtune.stages.tracking import StageTracker, parameter_counts
from pirtune.stages.training import gan_trainer, resume_path, trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuned:
    """What ``save_bundle`` keeps of a method whose generator did not train itself."""

    sampler: torch.nn.Module         # the generator whose weights the bundle keeps
    discriminator: torch.nn.Module
    iteration: int


@dataclass
class TuneContext:
    """One round's tuning: its settings, files, frozen estimator and tracker."""

    cfg: TuneConfig
    rnd: Round
    estimator: FrozenPIREstimator
    tracker: StageTracker
    started: tuple[float, float] = field(
        default_factory=lambda: (time.perf_counter(), time.process_time()))

    @property
    def out(self) -> Path:
        return self.rnd.tuned

    @property
    def checkpoints(self) -> Path:
        return self.rnd.dir / "tune_ckpt"

    def real_data(self) -> L.LightningDataModule:
        """``data``, set up: the real images D trains on and the watch compares with."""
        datamodule = instantiate(self.cfg.data)
        datamodule.setup("fit")
        return datamodule

    def watch(self, real: Dataset | None = None) -> TuningWatchCallback | None:
        """The tuning watch of ``eval_every`` (None when 0), against the untuned generator."""
        if self.cfg.eval_every <= 0:
            return None
        objective = None
        if self.cfg.objective is not None and (self.cfg.hidden_objective
                                               or _has_gold(self.rnd)):
            objective = build_objective(self.cfg.objective)  # simulated users', or a crowd's
        else:
            log.info("tune: no gold PIR (the PIR data hold no true PIRs); watching the proxy "
                     "only")
        reference, _, _ = load_bundle(self.rnd.start)
        return TuningWatchCallback(self.cfg.eval_every, self.cfg.eval_samples, reference,
                                   objective, self.rnd.dir, self.cfg.early_stop,
                                   self.cfg.early_stop_patience, self.cfg.reward_lambda,
                                   seed=self.cfg.seed, real=real)

    def plain_start(self, method: str) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
        """The round's start networks (generator, discriminator) and bundle metadata.

        A ``select`` or ``latent`` bundle leaves its generator untouched, so a later
        round of ``method`` starts again from that generator (with the estimator of
        every round so far): the earlier round's selector or prior is not built on.
        """
        generator, discriminator, meta = load_bundle(self.rnd.start)
        if meta.get("sampler") is not None:
            log.info("tune: round %d's %s starts from the untouched generator of %s (its %s "
                     "sampler is not built on)", self.rnd.index, method, self.rnd.start,
                     meta["sampler"]["method"])
            meta = {key: value for key, value in meta.items() if key != "sampler"}
        return generator, discriminator, meta

    def save(self, module: L.LightningModule | Tuned, model_cfg: dict[str, Any],
             sampler: dict[str, Any] | None = None, **provenance: Any) -> str:
        """Write the round's tuned bundle; log it as a ``generator`` artifact."""
        settings = {key: value for key, value in self.cfg.fingerprint().items()
                    if not key.startswith(("data.", "objective."))}
        # This sitting's cost (a resumed fit's earlier part is not counted).
        provenance = {"seconds": round(time.perf_counter() - self.started[0], 1),
                      "cpu_seconds": round(time.process_time() - self.started[1], 1),
                      **provenance}
        digest = save_bundle(module, model_cfg, self.out, sampler=sampler,
                             command=self.rnd.run.command, seed=self.cfg.seed,
                             round=self.rnd.index, tuned_from=str(self.rnd.start),
                             estimator=str(self.rnd.estimator), tuning=settings,
                             torch=str(torch.__version__), python=platform.python_version(),
                             **provenance)
        self.tracker.artifact(self.out, "generator", inputs=[self.rnd.start, self.rnd.estimator],
                              metadata={"iteration": module.iteration, "sha256": digest,
                                        "round": self.rnd.index})
        log.info("tune: wrote %s (sha256 %s) after %d steps", self.out, digest,
                 module.iteration)
        return digest


def fit(ctx: TuneContext, build: Callable[[], tuple[L.LightningModule, dict[str, Any]]],
        datamodule: L.LightningDataModule, real: Dataset | None = None,
        gan: bool = True) -> tuple[L.LightningModule, dict[str, Any]] | None:
    """Seed, build the module, fit it for ``tune.steps`` (resuming), with the watch.

    ``build`` runs after seeding (so the watch's reference generator, loaded
    before, never moves tuning's random stream). ``gan``: the module makes two
    Lightning steps per iteration (a D and a G update). Returns the module and
    its bundle metadata, or None when the fit was interrupted or this is not
    rank zero.
    """
    cfg, rnd = ctx.cfg, ctx.rnd
    watch = ctx.watch(real)
    L.seed_everything(cfg.seed + rnd.index, workers=True, verbose=False)
    module, meta = build()
    steps_per_iteration = STEPS_PER_ITERATION if gan else 1
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=ctx.checkpoints, save_last=True, save_top_k=0,
                        every_n_train_steps=steps_per_iteration * cfg.checkpoint_every),
    ]
    if watch is not None:
        callbacks.append(watch)
    counts = {name: getattr(module, name) for name in ("generator", "discriminator")
              if isinstance(getattr(module, name, None), torch.nn.Module)}
    ctx.tracker.config(parameter_counts(**counts, estimator=ctx.estimator))
    if gan:
        run_fit = gan_trainer(rnd.run, callbacks, ctx.tracker.loggers, cfg.steps, datamodule)
    else:
        run_fit = trainer(rnd.run, callbacks, ctx.tracker.loggers, max_steps=cfg.steps,
                          max_epochs=1)
    run_fit.fit(module, datamodule=datamodule, ckpt_path=resume_path("tune", ctx.checkpoints))
    if not run_fit.is_global_zero or run_fit.interrupted:
        return None
    return module, meta


def _has_gold(rnd: Round) -> bool:
    """Whether the round's PIR data hold true PIRs (simulated users) for the gold."""
    for dataset in rnd.datasets:
        table = dataset / "pir.csv"
        if not table.is_file():
            return False
        with table.open() as f:
            if "true_pir" not in f.readline():
                return False
    return True
