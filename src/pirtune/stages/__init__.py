"""The stages of pirtune, one module each, and the table the entry point dispatches on.

Each stage is a function of its own typed config section (``config``) and a
run directory or round (``rundir``): ``pretrain``, ``sample``, ``collect``,
``estimate``, ``tune``, ``evaluate``, ``quality``, ``report``, and ``loop``,
which scores its generator's quality, runs collect to evaluate and the tuned
generator's quality per round, and then the report. Each opens its own W&B run
(``tracking``) and keeps a record of the config it ran with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pirtune.stages.collect import collect
from pirtune.stages.config import TrainConfig
from pirtune.stages.estimate import estimate
from pirtune.stages.evaluate import evaluate
from pirtune.stages.loop import loop
from pirtune.stages.naming import LOOP_STAGES
from pirtune.stages.pretrain import pretrain
from pirtune.stages.quality import quality
from pirtune.stages.report import report
from pirtune.stages.rundir import Round, Run, rounds
from pirtune.stages.sample import sample
from pirtune.stages.tune import tune


def the_round(cfg: TrainConfig, run: Run) -> Round:
    """The round ``cfg.round`` names, for a PIR-loop stage run alone."""
    return rounds(run, cfg.round, cfg.generator_ckpt, cfg.pir_data)[-1]


STAGES: dict[str, Callable[[TrainConfig, Run], Path]] = {
    "loop": lambda cfg, run: loop(cfg.loop(), run),
    "pretrain": lambda cfg, run: pretrain(cfg.pretrain, run),
    "sample": lambda cfg, run: sample(cfg.sample, run),
    "collect": lambda cfg, run: collect(cfg.collect, the_round(cfg, run)),
    "estimate": lambda cfg, run: estimate(cfg.estimate, the_round(cfg, run)),
    "tune": lambda cfg, run: tune(cfg.tune, the_round(cfg, run)),
    "evaluate": lambda cfg, run: evaluate(cfg.evaluate, the_round(cfg, run)),
    "quality": lambda cfg, run: quality(cfg.quality, run),
    "report": lambda cfg, run: report(run),
}

__all__ = ["LOOP_STAGES", "STAGES", "Round", "Run", "collect", "estimate", "evaluate", "loop",
           "pretrain", "quality", "report", "rounds", "sample", "the_round", "tune"]
