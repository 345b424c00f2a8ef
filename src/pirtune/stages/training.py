"""What the stages that train share: the Trainer, resuming, and DDP's rank zero."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from pirtune.errors import UsageError
from pirtune.models.acgan import STEPS_PER_ITERATION
from pirtune.stages.rundir import Run

log = logging.getLogger(__name__)


def rank_zero() -> bool:
    """False in the extra processes DDP launches (they re-run the command line)."""
    return rank_zero_only.rank == 0


def barrier() -> None:
    """Under DDP, wait until every process gets here (rank 0 has written its files)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def trainer(run: Run, callbacks: list[L.Callback], loggers: list[Logger],
            **limits) -> L.Trainer:
    """The run's Trainer with the stage's callbacks and loggers, and a progress bar."""
    if run.progress:
        callbacks = [*callbacks, RichProgressBar()]
    return instantiate(run.trainer, callbacks=callbacks, logger=loggers,
                       enable_progress_bar=run.progress, **limits)


def gan_trainer(run: Run, callbacks: list[L.Callback], loggers: list[Logger],
                iterations: int, datamodule: L.LightningDataModule) -> L.Trainer:
    """The run's Trainer for ``iterations`` D+G pairs of a GAN on ``datamodule``.

    Lightning counts two steps per iteration. The epochs those steps span are
    given too (at least: each process sees its share of the batches), so the
    progress bar reads "Epoch 3/46" rather than "Epoch 3/-2"; and a run shorter
    than an epoch has an epoch of exactly its iterations, so the bar counts
    the batches that will run (400/400, not 400/512).
    """
    fit = trainer(run, callbacks, loggers, max_steps=STEPS_PER_ITERATION * iterations)
    batches = max(1, len(datamodule.train_dataloader()) // fit.world_size)
    fit.fit_loop.max_epochs = math.ceil(iterations / batches)
    if iterations < batches:
        fit.limit_train_batches = iterations
    return fit


def resume_path(stage: str, checkpoints: Path, explicit: str | None = None) -> str | None:
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
