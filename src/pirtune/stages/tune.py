"""Stage ``tune``: the round's generator steered by its frozen estimator.

The method is ``tune.method``'s (``pirtune.tuning``): the paper's gradient
(section 2.4, ``PIRTuningModule``: G and D fine-tuned, D on ``data`` as in
pre-training), ``select``, ``latent`` or ``distill``. Each writes the round's
``tuned.pt`` (a generator bundle, with its sampler where the method draws its
own latents), logged as a ``generator`` artifact made from the round's
generator and estimator; the trained methods checkpoint to ``tune_ckpt/``.
With ``eval_every`` > 0 the training is watched on fixed latents
(``pirtune.models.watch``): proxy and gold PIR, quality, distance from the
untuned samples and D's accuracies, in the round's ``tune_watch.csv``. The
gold is the objective, unless the PIR data hold no true PIRs (the web app's
picks; a simulated crowd's, ``data.hidden_objective=true``, have their hidden one).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pirtune.estimator.files import load_estimator
from pirtune.stages.config import TuneConfig
from pirtune.stages.rundir import Round, begin_stage
from pirtune.stages.tracking import track
from pirtune.stages.training import barrier
from pirtune.tuning import build_method
from pirtune.tuning.base import TuneContext

log = logging.getLogger(__name__)


def tune(cfg: TuneConfig, rnd: Round) -> Path:
    """Write the round's ``tuned.pt`` (unless done); return its path."""
    out = rnd.tuned
    method = build_method(cfg.method)
    record = begin_stage("tune", rnd.dir,
                         {**cfg.fingerprint(), "from": str(rnd.start),
                          "estimator": str(rnd.estimator)}, out, own=(rnd.dir / "tune_ckpt",),
                         extendable=("steps",))
    if record is None:
        return out
    estimator = load_estimator(rnd.estimator)
    method.check(estimator, cfg.reward)
    with track(rnd.run, "tune", rnd, record) as tracker:
        method.tune(TuneContext(cfg, rnd, estimator, tracker))
    barrier()
    return out
