"""Hydra entry point: ``pirtune-train [stage=...] [group=option ...]``.

Also ``python -m pirtune.train`` and, in a checkout, ``python train.py``.
Composes ``conf/train.yaml`` over the typed schema (``pirtune.stages.config``),
converts it to typed sections and dispatches to the stage. Bad input (an
unknown group option or stage, a missing file) ends with one line naming the
value and the fix, and exit status 2. For Hydra's sweepers the main function
returns the last round's Cohen's d after a loop (``None`` after other stages).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pirtune.data.datamodules import folder_classes
from pirtune.errors import UsageError
from pirtune.objectives import objective_name
from pirtune.paths import CONFIG_DIR, home, runs_root
from pirtune.stages import LOOP_STAGES, STAGES, Run
from pirtune.stages.config import TrainConfig, register_configs
from pirtune.stages.loop import last_evaluation
from pirtune.stages.naming import INTERACTIONS, default_generator, run_label, run_name
from pirtune.stages.rundir import BUNDLE_NAME

log = logging.getLogger(__name__)

# The stages that run on the web app's picks (data=interactions): the loop's, less collect.
INTERACTION_STAGES = ("loop", "estimate", "tune", "evaluate", "report")

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


def _wandb_offline() -> bool:
    """True unless W&B credentials are configured (env key, netrc, or WANDB_MODE=online)."""
    if os.environ.get("WANDB_MODE") == "online" or os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path.home() / ".netrc"
    return not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def register_resolvers() -> None:
    """The schema, and the resolvers ``conf/`` uses: where files go, W&B's mode, run names.

    ``run_name``, ``run_label`` and ``default_generator`` read the whole config
    (``pirtune.stages.naming``); ``folder_classes`` counts ``data.root``'s classes.
    """
    register_configs()
    for name, resolver in {"runs_root": lambda: str(runs_root()),
                           "pirtune_home": lambda: str(home()),
                           "wandb_offline": _wandb_offline,
                           "run_name": lambda *, _root_: run_name(_root_),
                           "run_label": lambda *, _root_: run_label(_root_),
                           "default_generator": lambda *, _root_: str(default_generator(_root_)),
                           "folder_classes": lambda *, _parent_: folder_classes(
                               OmegaConf.select(_parent_, "root", throw_on_missing=False)),
                           }.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


def check_group_overrides(args: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """Reject ``group=option`` arguments whose option has no file, naming the choices.

    Hydra's own message spans many lines and a search path; this one names the
    group, the bad option and the valid ones on one line.
    """
    for arg in args:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key.startswith(("~", "hydra")):
            continue
        group = config_dir / key
        if not group.is_dir():
            continue
        choices = sorted(p.stem for p in group.glob("*.yaml"))
        for option in value.split(","):  # multirun sweeps list options with commas
            if option and option != "null" and option not in choices:
                raise UsageError(
                    f"{key} '{option}' is unknown; choose one of: {', '.join(choices)}"
                )


def _arguments() -> list[str]:
    """The command's overrides (Hydra's, or argv outside Hydra)."""
    return list(HydraConfig.get().overrides.task if HydraConfig.initialized() else sys.argv[1:])


def _command_line() -> str:
    """The command that reproduces this run."""
    return " ".join(["pirtune-train", *_arguments()])


def settings(cfg: DictConfig) -> TrainConfig:
    """The composed config as typed sections, after the checks Hydra cannot make."""
    if cfg.stage not in STAGES:
        raise UsageError(f"stage '{cfg.stage}' is unknown; choose one of: {', '.join(STAGES)}")
    if cfg.data.get("kind") == INTERACTIONS and cfg.stage not in INTERACTION_STAGES:
        raise UsageError(f"data=interactions feeds stage={', '.join(INTERACTION_STAGES)}; run "
                         f"stage={cfg.stage} with data=landscapes or data=imagefolder")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"{missing[0]} must be set; add {missing[0]}=<value> to the command")
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def the_run(cfg: DictConfig) -> Run:
    """The run directory and what its stages share, from the composed config."""
    return Run(
        dir=Path(cfg.run_dir), name=cfg.name, scale=cfg.scale,
        objective=objective_name(cfg.objective) if cfg.stage in LOOP_STAGES else None,
        trainer=OmegaConf.to_container(cfg.trainer, resolve=True),
        loggers=OmegaConf.to_container(cfg.logger or {}, resolve=True),
        progress=bool(cfg.progress), seeds={"seed": cfg.seed},
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        command=_command_line())


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
        args = [a for a in _arguments() if a.partition("=")[0].lstrip("+") != "stage"]
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
