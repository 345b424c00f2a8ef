"""Stage ``pretrain``: train the ACGAN on ``data`` (C.1) and write its generator bundle.

Lightning checkpoints go to ``checkpoints/`` (``last.ckpt`` and periodic
ones), sample grids to ``samples/`` and W&B, the quality figures
(``pretrain/quality/*``, ``QualityCallback``) to the loggers, and the
finished networks to ``generator.pt`` (``pirtune.models.bundle.save_bundle``),
logged as a ``generator`` artifact. Running it again resumes from ``last.ckpt``.
"""

from __future__ import annotations

import logging
import platform
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint

from pirtune.metrics.callback import QualityCallback
from pirtune.models.acgan import STEPS_PER_ITERATION, ACGANModule, SampleGridCallback
from pirtune.models.bundle import save_bundle
from pirtune.stages.config import PretrainConfig
from pirtune.stages.rundir import BUNDLE_NAME, Run, begin_stage
from pirtune.stages.tracking import parameter_counts, track
from pirtune.stages.training import gan_trainer, resume_path

log = logging.getLogger(__name__)


def pretrain(cfg: PretrainConfig, run: Run) -> Path:
    """Train the ACGAN and write ``<run dir>/generator.pt``; return its path."""
    bundle_path = run.dir / BUNDLE_NAME
    checkpoints = run.dir / "checkpoints"
    record = begin_stage("pretrain", run.dir, cfg.fingerprint(), bundle_path,
                         own=(checkpoints, run.dir / "samples"),
                         again=cfg.ckpt_path is not None, extendable=("iterations",))
    if record is None:
        return bundle_path

    # A bad model setting fails here, before minutes of rendering scenes; the networks
    # are built again after seeding, so the weights do not depend on this check. Its
    # warnings are left to the real build (a missing photo folder gives 0 classes here,
    # and the data's own one-line error below).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")  # a bad folder fails here, before any training output
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module: ACGANModule = instantiate(cfg.model)
    callbacks: list[L.Callback] = [
        # Periodic checkpoints are all kept, and last.ckpt beside them for resuming.
        ModelCheckpoint(dirpath=checkpoints, filename="{step}", save_top_k=-1, save_last=True,
                        every_n_train_steps=STEPS_PER_ITERATION * cfg.checkpoint_every),
        SampleGridCallback(run.dir / "samples", cfg.sample_every, cfg.sample_per_class,
                           seed=cfg.seed),
    ]
    if cfg.quality_samples:
        callbacks.append(QualityCallback(cfg.sample_every, cfg.quality_samples, seed=cfg.seed))
    with track(run, "pretrain", record=record) as tracker:
        tracker.config(parameter_counts(generator=module.generator,
                                        discriminator=module.discriminator))
        fit = gan_trainer(run, callbacks, tracker.loggers, cfg.iterations, datamodule)
        start = time.perf_counter()
        fit.fit(module, datamodule=datamodule,
                ckpt_path=resume_path("pretrain", checkpoints, cfg.ckpt_path))
        if fit.is_global_zero:
            digest = save_bundle(
                module, cfg.model, bundle_path,
                command=run.command,
                seed=cfg.seed,
                iterations=module.iteration,
                # This fit's wall time: a resumed run's earlier part is not counted.
                minutes=round((time.perf_counter() - start) / 60, 2),
                data=cfg.data,
                torch=str(torch.__version__),
                python=platform.python_version(),
            )
            tracker.artifact(bundle_path, "generator",
                             metadata={"iteration": module.iteration, "sha256": digest})
            log.info("pretrain: wrote %s (sha256 %s) after %d iterations", bundle_path, digest,
                     module.iteration)
    return bundle_path
