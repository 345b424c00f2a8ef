"""Hydra entry point: ``python -m pirtune.train [stage=...] [group=option ...]``.

Composes ``conf/train.yaml``, seeds everything, and runs the requested stage
from ``pirtune.pipeline`` on the run directory. Bad input (an unknown group
option or stage, a missing file) ends with one line naming the value and the
fix, and exit status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pirtune import pipeline
from pirtune.errors import UsageError
from pirtune.objectives import objective_name

# An editable install keeps conf/ beside src/; nothing else locates the tree.
REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "conf"


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
    if data.get("kind") == pipeline.INTERACTIONS:
        return pipeline.INTERACTIONS
    return objective_name(objective) if stage in pipeline.LOOP_STAGES else stage


def register_resolvers() -> None:
    """``${repo_root:}``, ``${wandb_offline:}`` and ``${run_name:...}`` for the config tree."""
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("wandb_offline", _wandb_offline, replace=True)
    OmegaConf.register_new_resolver("run_name", _run_name, replace=True)


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


def _usage_error(err: BaseException) -> UsageError | None:
    """The UsageError behind ``err`` (Hydra wraps errors raised while instantiating)."""
    while err is not None and not isinstance(err, UsageError):
        err = err.__cause__
    return err


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _run(cfg: DictConfig) -> None:
    try:
        pipeline.run(cfg)
    except Exception as err:
        usage = _usage_error(err)
        if usage is None:
            raise
        print(f"pirtune-train: error: {usage}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Console script ``pirtune-train``."""
    register_resolvers()
    try:
        check_group_overrides(sys.argv[1:])
    except UsageError as err:
        print(f"pirtune-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    _run()


if __name__ == "__main__":
    main()
