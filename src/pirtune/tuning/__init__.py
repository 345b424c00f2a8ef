"""Tuning methods behind one seam, ``tune.method``: each a class chosen by ``_target_``.

* ``gradient`` (``tune=pir``, ``experiment=paper``): the paper's, section 2.4 —
  a gradient through the frozen estimator into G's weights.
* ``select`` (``tune=select``): best-of-n at sampling time; G never changes.
* ``latent`` (``tune=latent``): G frozen, a learned latent prior ε ↦ z with
  its exact KL to N(0, I) as the leash.
* ``distill`` (``tune=distill``): G's weights learn a reweighted copy of what
  it already draws (D's real batch resampled ∝ exp(R/β)); no gradient
  through the estimator.

Every method takes the round's frozen estimator and never changes it, and
writes the round's ``tuned.pt``, a bundle that ``pirtune.models.bundle.load_sampler``
turns into a sampler for every consumer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate

from pirtune.errors import UsageError

if TYPE_CHECKING:
    from pirtune.tuning.base import TuneContext

METHODS = {
    "gradient": "pirtune.tuning.gradient.GradientMethod",
    "select": "pirtune.tuning.select.SelectMethod",
    "latent": "pirtune.tuning.latent.LatentMethod",
    "distill": "pirtune.tuning.distill.DistillMethod",
}


class TuningMethod:
    """A way of steering the generator with a frozen estimator (``tune.method``).

    Subclasses check their own settings in ``__init__`` (one sentence naming the
    key and the fix), say what they need of the estimator in ``check``, and
    write the round's tuned bundle in ``tune``.
    """

    name = ""

    def check(self, estimator: Any, reward: str) -> None:
        """Refuse a reward or an estimator this method cannot use (before any work).

        ``estimator`` is ``None`` when the config is checked before the loop starts.
        """
        from pirtune.tuning.reward import check_reward

        check_reward(reward, estimator)

    def tune(self, ctx: TuneContext) -> None:
        """Write ``ctx.out`` from ``ctx.rnd.start`` and ``ctx.estimator``."""
        raise NotImplementedError


def build_method(spec: Mapping[str, Any] | None) -> TuningMethod:
    """The method of ``tune.method`` (``None``: the paper's gradient), its settings checked."""
    if spec is None:
        spec = {"_target_": METHODS["gradient"]}
    target = spec.get("_target_")
    known = {path: name for name, path in METHODS.items()}
    if target not in known:
        try:
            cls = get_class(target) if isinstance(target, str) else None
        except (ImportError, AttributeError, ValueError, InstantiationException):
            cls = None
        if cls is None or not issubclass(cls, TuningMethod):
            raise UsageError(f"tune.method={target!r} is unknown; choose one of "
                             f"{', '.join(METHODS)} (tune=pir, select, latent or distill)")
    try:
        return instantiate(dict(spec))
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UsageError):
            raise cause from None
        if isinstance(cause, TypeError):
            raise UsageError(f"tune.method for {target}: {cause}; see conf/tune/ for its "
                             "keys") from None
        raise
