"""Hydra entry point: ``pirtune-train [stage=...] [group=option ...]``.

Also ``python -m pirtune.train`` and, in a checkout, ``python train.py``.
Composes ``conf/train.yaml`` over the typed schema (``pirtune.stages.config``),
converts it to typed sections (``pirtune.compose``) and dispatches to the
stage. Bad input (an unknown group option or stage, a missing file) ends with
one line naming the value and the fix, and exit status 2. For Hydra's sweepers the main function
returns the last round's Cohen's d after a loop (``None`` after other stages).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from pirtune.compose import arguments, check_group_overrides, register_resolvers, settings, the_run
from pirtune.errors import UsageError
from pirtune.paths import CONFIG_DIR
from pirtune.stages import LOOP_STAGES, STAGES
from pirtune.stages.loop import last_evaluation
from pirtune.stages.naming import INTERACTIONS
from pirtune.stages.rundir import BUNDLE_NAME

log = logging.getLogger(__name__)

# Lightning's notices that no user can act on: checkpoints after the optimiser
# steps are what resuming needs, the pytree notice is Lightning's own, the frozen
# PIR estimator stays in eval mode inside the tuning module on purpose, a GAN
# stage resumed mid-epoch draws a fresh shuffle of the scenes, a resumed stage
# checkpoints into its own folder again, the in-memory datasets need no loader
# workers, a short estimator epoch logs at its end, and KID keeps the features
# it is given (a few thousand, by design). Set when the command starts, never on
# import.
QUIET = (
    "Using ModelCheckpoint with manual optimization",
    r".*isinstance\(treespec, LeafSpec\)",
    r"Found \d+ module\(s\) in eval mode",
    "You're resuming from a checkpoint that ended before",
    r"Checkpoint directory .* exists and is not empty",
    r".*does not have many workers",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    "Metric `Kernel Inception Distance` will save all extracted features",
)


def run(cfg: DictConfig, stage: str | None = None) -> Path:
    """Run ``stage`` (default ``cfg.stage``) on ``cfg.run_dir``; return its main output.

    The loop and its collect, tune and evaluate stages draw from
    ``generator_ckpt``. When it is missing and is the
    bundle ``stage=pretrain`` with this config writes (the default for
    ``experiment=paper`` and for photos, ``data.root``), ``stage=loop`` pre-trains
    it first, in its own run directory, then runs the loop on it. Otherwise, and
    in a multirun (whose jobs would race to pre-train one generator), the
    command stops naming the command that pre-trains it.
    """
    if stage is not None:
        cfg = cfg.copy()
        cfg.stage = stage
    typed = settings(cfg)
    if cfg.stage in LOOP_STAGES and cfg.data.get("kind") != INTERACTIONS:
        _pretrain_first(cfg)
        _link_sweep_job(Path(cfg.run_dir))
    return STAGES[typed.stage](typed, the_run(cfg))


def _pretrain_first(cfg: DictConfig) -> None:
    """Pre-train a missing ``generator_ckpt`` when ``stage=pretrain`` writes it (see ``run``)."""
    generator = Path(cfg.generator_ckpt)
    if generator.exists() or cfg.stage in ("estimate", "report"):  # neither draws from it
        return
    pretraining = cfg.copy()
    pretraining.stage = "pretrain"
    ours = (Path(pretraining.run_dir) / BUNDLE_NAME).resolve() == generator.resolve()
    if cfg.stage != "loop" or not ours or _multirun():
        args = [a for a in arguments() if a.partition("=")[0].lstrip("+") != "stage"]
        how = (f"`{' '.join(['pirtune-train', 'stage=pretrain', *args])}`" if ours
               else "stage=pretrain with the same data and model")
        raise UsageError(f"generator_ckpt {generator} does not exist; pre-train it first with "
                         f"{how}, or give generator_ckpt=<a generator bundle>")
    log.info("generator_ckpt %s does not exist: pre-training it first (stage=pretrain)",
             generator)
    run(pretraining)


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _link_sweep_job(run_dir: Path) -> None:
    """In a multirun, link the job's output folder to its run (the sweep report follows it)."""
    if not _multirun():
        return
    link = Path(HydraConfig.get().runtime.output_dir) / "run"
    with contextlib.suppress(FileExistsError):  # a re-run, or another DDP process, made it
        link.symlink_to(run_dir.resolve(), target_is_directory=True)


def _usage_error(err: BaseException) -> UsageError | None:
    """The UsageError behind ``err`` (Hydra wraps errors raised while instantiating)."""
    while err is not None and not isinstance(err, UsageError):
        err = err.__cause__
    return err


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _main(cfg: DictConfig) -> float | None:
    try:
        run(cfg)
    except Exception as err:
        usage = _usage_error(err)
        if usage is None:
            raise
        print(f"pirtune-train: error: {usage}", file=sys.stderr)
        sys.exit(2)
    if cfg.stage != "loop":
        return None
    evaluation = last_evaluation(the_run(cfg), cfg.iterations)
    return None if evaluation is None else evaluation.change.cohens_d


def main() -> None:
    """Console script ``pirtune-train``."""
    register_resolvers()
    for message in QUIET:
        warnings.filterwarnings("ignore", message=message)
    try:
        check_group_overrides(sys.argv[1:])
    except UsageError as err:
        print(f"pirtune-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
