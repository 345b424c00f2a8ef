"""What the stages that train share: the Trainer, resuming, and DDP's rank zero."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from pirtune.errors import UsageError
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
