"""Run names: a readable label and a short hash of every setting that changes the results.

A run directory is ``runs/<scale>-<label>-<hash>``: the label says what the
run is (the objective for the PIR-loop stages, else the stage; ``interactions``
for the web app's picks; the photo folder's name after the stage when
``data.root`` is set), and the hash is the first 8 hex digits of SHA-256 over
the *results* of the config sections the stage runs: each section's settings
less its ``not_results`` (``Section.results``), exactly what a stage's record
compares. So two commands whose results could differ (another seed, VGG
weights, input size, estimator, tuning or data) never share a directory, and
every job of a Hydra sweep gets its own. Keys that do not change results stay
out: the trainer (how, not what), loggers, progress bars, worker counts, cache
folders, ``round``, ``iterations`` (round r of a longer loop is the same
round), the run's own folder and ``hydra.*``.

Paths in the hashed settings are written relative to the package (``pirtune:``)
or to ``$PIRTUNE_HOME``, so the same command names the same run from another
checkout or home.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pirtune.objectives import objective_name
from pirtune.paths import PACKAGE_DIR, SHIPPED_GENERATOR, home, runs_root
from pirtune.stages.config import (
    CollectConfig,
    EstimateConfig,
    EvaluateConfig,
    PretrainConfig,
    QualityConfig,
    SampleConfig,
    Section,
    TuneConfig,
)
from pirtune.stages.rundir import BUNDLE_NAME

INTERACTIONS = "interactions"  # data.kind of conf/data/interactions.yaml

# The stages that share the objective's run directory.
LOOP_STAGES = ("loop", "collect", "estimate", "tune", "evaluate", "report")

# What each stage's results depend on: config sections, and top-level keys the
# stage reads directly (the loop's start and its first PIR dataset).
_LOOP = ((CollectConfig, EstimateConfig, TuneConfig, EvaluateConfig, QualityConfig),
         ("generator_ckpt", "pir_data"))
_RESULTS: dict[str, tuple[tuple[type[Section], ...], tuple[str, ...]]] = {
    **{stage: _LOOP for stage in LOOP_STAGES},
    # The web app's picks: no collect; the hidden objective, if any, is the evaluation's.
    INTERACTIONS: ((EstimateConfig, TuneConfig, EvaluateConfig, QualityConfig),
                   ("generator_ckpt", "pir_data")),
    "pretrain": ((PretrainConfig,), ()),
    "sample": ((SampleConfig,), ()),
    "quality": ((QualityConfig,), ()),
}
# Stands in for the run's own folder while hashing: pir_data's default lives in it.
_THIS_RUN = "<run>"


def _kind(cfg: DictConfig, stage: str) -> str:
    """The key of ``_RESULTS`` for ``stage`` (``interactions`` for the web app's picks)."""
    return INTERACTIONS if OmegaConf.select(cfg, "data.kind") == INTERACTIONS else stage


def _portable(value: Any) -> Any:
    """A path under the package or the home, written relative to it; other values as they are."""
    if not isinstance(value, str):
        return value
    for root, prefix in ((PACKAGE_DIR, "pirtune:"), (home(), "")):
        if value.startswith(f"{root}/"):
            return prefix + value[len(str(root)) + 1:]
    return value


def results(cfg: DictConfig, stage: str | None = None) -> dict[str, Any]:
    """The settings that decide the results of ``stage`` (default ``cfg.stage``), flattened.

    Args:
        cfg: the composed config (``conf/train.yaml``), interpolations unresolved.
        stage: the stage to name a run for.

    Returns:
        Dotted keys (``tune.lr``, ``collect.objective.colours``) to resolved values;
        a value still missing (``???``) is kept as ``"???"``.
    """
    tree = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    tree.pop("hydra", None)
    # Resolving the name resolves the config again each time ${run_dir} is read.
    return dict(_results(json.dumps(tree, sort_keys=True), stage or str(cfg.stage), str(home())))


@functools.lru_cache(maxsize=64)
def _results(tree: str, stage: str, home_dir: str) -> tuple[tuple[str, Any], ...]:
    # The run's own folder is a fixed word here: the hash cannot depend on itself.
    plain = OmegaConf.create({**json.loads(tree), "stage": stage, "name": _THIS_RUN,
                              "run_dir": _THIS_RUN})
    sections, keys = _RESULTS[_kind(plain, stage)]
    found: dict[str, Any] = {}
    for section in sections:
        values = OmegaConf.to_container(plain[section.name], resolve=True,
                                        throw_on_missing=False, enum_to_str=True)
        found |= {f"{section.name}.{key}": value
                  for key, value in section.results(values).items()}  # type: ignore[arg-type]
    for key in keys:
        found[key] = OmegaConf.select(plain, key, throw_on_missing=False)
    return tuple((key, _portable(value)) for key, value in sorted(found.items()))


def results_hash(settings: dict[str, Any]) -> str:
    """The first 8 hex digits of SHA-256 over ``settings`` as sorted JSON."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_label(cfg: DictConfig, stage: str | None = None) -> str:
    """The readable part of the run's name: ``<scale>-<objective|stage>[-<photo folder>]``."""
    stage = stage or str(cfg.stage)
    kind = _kind(cfg, stage)
    if kind == INTERACTIONS:
        label = INTERACTIONS
    elif stage in LOOP_STAGES:
        label = objective_name(OmegaConf.to_container(cfg.objective, resolve=True))
    else:
        label = stage
    root = OmegaConf.select(cfg, "data.root", throw_on_missing=False)
    if isinstance(root, str) and root != "???" and kind != INTERACTIONS:
        label = f"{label}-{Path(root).name}"
    return f"{cfg.scale}-{label}"


def run_name(cfg: DictConfig, stage: str | None = None) -> str:
    """The run's name and folder under ``runs/``: ``<label>-<hash of its results>``."""
    return f"{run_label(cfg, stage)}-{results_hash(results(cfg, stage))}"


def pretrained_generator(cfg: DictConfig) -> Path:
    """The bundle ``pirtune-train stage=pretrain`` with this config's settings writes."""
    return runs_root() / run_name(cfg, "pretrain") / BUNDLE_NAME


def default_generator(cfg: DictConfig) -> Path:
    """``generator_ckpt`` when the command gives none.

    The CPU generator shipped in the package for the procedural landscapes at CPU
    scale; otherwise (``experiment=paper``, or photos with ``data.root``) the
    generator that ``stage=pretrain`` with this config writes, which the loop
    pre-trains first when it is missing (``pirtune.train.run``).
    """
    root = OmegaConf.select(cfg, "data.root", throw_on_missing=False)
    if cfg.scale == "cpu" and root is None:
        return SHIPPED_GENERATOR
    return pretrained_generator(cfg)
