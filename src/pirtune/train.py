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
import os
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pirtune.errors import UsageError
from pirtune.objectives import objective_name
from pirtune.paths import CONFIG_DIR, SHIPPED_GENERATOR, home, runs_root
from pirtune.stages import LOOP_STAGES, STAGES, Run
from pirtune.stages.config import TrainConfig, register_configs
from pirtune.stages.loop import last_evaluation

INTERACTIONS = "interactions"  # data.kind of conf/data/interactions.yaml

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


def _run_name(stage: str, objective: DictConfig, data: DictConfig) -> str:
    """The PIR-loop stages of an objective share one run, named after the objective.

    A run on the web app's interactions is ``interactions``: in the objective's
    run it would find that run's ``estimator.pt`` and skip.
    """
    if data.get("kind") == INTERACTIONS:
        return INTERACTIONS
    return objective_name(objective) if stage in LOOP_STAGES else stage


def register_resolvers() -> None:
    """The schema, and the resolvers ``conf/`` uses: where files go, W&B's mode, run names."""
    register_configs()
    for name, resolver in {"runs_root": lambda: str(runs_root()),
                           "pirtune_home": lambda: str(home()),
                           "shipped_generator": lambda: str(SHIPPED_GENERATOR),
                           "wandb_offline": _wandb_offline,
                           "run_name": _run_name}.items():
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


def _command_line() -> str:
    """The command that reproduces this run (Hydra's overrides, or argv outside Hydra)."""
    args = HydraConfig.get().overrides.task if HydraConfig.initialized() else sys.argv[1:]
    return " ".join(["pirtune-train", *args])


def settings(cfg: DictConfig) -> TrainConfig:
    """The composed config as typed sections, after the checks Hydra cannot make."""
    if cfg.stage not in STAGES:
        raise UsageError(f"stage '{cfg.stage}' is unknown; choose one of: {', '.join(STAGES)}")
    if cfg.data.get("kind") == INTERACTIONS and cfg.stage != "estimate":
        raise UsageError(f"data=interactions feeds stage=estimate only; run stage={cfg.stage} "
                         "with data=landscapes or data=imagefolder")
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
    """Run ``stage`` (default ``cfg.stage``) on ``cfg.run_dir``; return its main output."""
    if stage is not None:
        cfg = cfg.copy()
        cfg.stage = stage
    typed = settings(cfg)
    if cfg.stage in LOOP_STAGES:
        _link_sweep_job(Path(cfg.run_dir))
    return STAGES[typed.stage](typed, the_run(cfg))


def _link_sweep_job(run_dir: Path) -> None:
    """In a multirun, link the job's output folder to its run (the sweep report follows it)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
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
