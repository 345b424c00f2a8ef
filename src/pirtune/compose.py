"""The Hydra helpers that the entry point, scripts and the web app share (resolvers, checks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pirtune.data.datamodules import folder_classes
from pirtune.errors import UsageError
from pirtune.objectives import objective_name
from pirtune.paths import CONFIG_DIR, home, runs_root
from pirtune.stages import LOOP_STAGES, STAGES, Run
from pirtune.stages.config import TrainConfig, register_configs
from pirtune.stages.naming import INTERACTIONS, default_generator, run_label, run_name

# The stages that run on the web app's picks (data=interactions): the loop's, less collect.
INTERACTION_STAGES = ("loop", "estimate", "tune", "evaluate", "report")


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


def arguments() -> list[str]:
    """The command's overrides (Hydra's, or argv outside Hydra)."""
    return list(HydraConfig.get().overrides.task if HydraConfig.initialized() else sys.argv[1:])


def _command_line() -> str:
    """The command that reproduces this run."""
    return " ".join(["pirtune-train", *arguments()])


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
