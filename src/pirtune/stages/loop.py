"""Stage ``loop`` (the default): the generator's quality, every round's collect → estimate →
tune → evaluate → quality of the tuned generator, then the report.
``quality.in_loop=false`` leaves both quality stages out (the report says so).
On the web app's picks (``data=interactions``) there is one round and no
collect: the picks are the data.

Every stage skips what is done and resumes what is half done, so running
the same command after an interruption finishes the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from pirtune.errors import UsageError
from pirtune.evaluation import EVALUATION_NAME, Evaluation
from pirtune.stages.collect import collect
from pirtune.stages.config import LoopConfig
from pirtune.stages.estimate import estimate
from pirtune.stages.evaluate import evaluate
from pirtune.stages.quality import base_quality, round_quality
from pirtune.stages.report import report
from pirtune.stages.rundir import Run, rounds
from pirtune.stages.tune import tune


def loop(cfg: LoopConfig, run: Run) -> Path:
    """Run every round, then write the run's report; return its path."""
    interactions = cfg.estimate.interactions is not None
    if interactions and cfg.iterations != 1:
        raise UsageError(f"iterations={cfg.iterations}: data=interactions has one round (the "
                         "picks people made); leave iterations=1, and serve the tuned "
                         "generator to collect more")
    # Before any round: a data problem (too few real images) stops the loop at once.
    if cfg.quality.in_loop:
        base_quality(cfg.quality, run, cfg.generator)
    for rnd in rounds(run, cfg.iterations, cfg.generator, cfg.pir_data):
        if not interactions:
            collect(cfg.collect, rnd)
        estimate(cfg.estimate, rnd)
        tune(cfg.tune, rnd)
        evaluate(cfg.evaluate, rnd)
        if cfg.quality.in_loop:
            round_quality(cfg.quality, rnd)
    return report(run)


def last_evaluation(run: Run, iterations: int) -> Evaluation | None:
    """The evaluation of the run's last round, when it exists."""
    folder = run.dir if iterations == 1 else run.dir / f"round{iterations}"
    path = folder / EVALUATION_NAME
    return Evaluation.from_dict(json.loads(path.read_text())) if path.is_file() else None
