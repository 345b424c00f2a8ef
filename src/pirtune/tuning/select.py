"""``tune.method=select``: best-of-n at sampling time; the generator never changes."""

from __future__ import annotations

import logging
import time

import torch

from pirtune.errors import UsageError
from pirtune.estimator.files import read_estimator_file
from pirtune.models.bundle import (
    Sampler,
    Selector,
    check_acceptance,
    draw_latents,
    sampler_state,
)
from pirtune.tuning import TuningMethod
from pirtune.tuning.base import TuneContext, Tuned

log = logging.getLogger(__name__)


class SelectMethod(TuningMethod):
    """Keep the untouched generator's draws that the estimator scores highest.

    No training: the tuned bundle is the start bundle plus a ``Selector``
    (``pirtune.models.bundle``) that carries the estimator and the rule. Every
    image it gives is one G draws for the chosen latent. The cost moves to
    sampling: about 1/``acceptance`` candidates are rendered and scored per
    image; ``seconds_per_image`` is measured and kept in the bundle.

    Args:
        acceptance: the share of draws kept, in (0, 1] (1 keeps every draw:
            the untuned generator). Sets the threshold, or n = ⌈1/acceptance⌉
            candidates for the softmax rule.
        temperature: ``None`` for the threshold rule, or τ > 0 to keep one of n
            candidates with probability ∝ exp(R/τ).
        calibration: draws per class that set the thresholds.
        realism: the share of each class's draws the bundle's discriminator rejects
            before the estimate ranks the rest (``Selector``'s docstring: why, and
            what it measured); 0 keeps the estimate's rule alone.
    """

    name = "select"

    def __init__(self, acceptance: float = 0.2, temperature: float | None = None,
                 calibration: int = 2000, realism: float = 0.1) -> None:
        check_acceptance(acceptance, temperature, realism)
        if calibration < 10:
            raise UsageError(f"tune.method.calibration={calibration} must be at least 10 "
                             "draws per class")
        self.acceptance = acceptance
        self.temperature = temperature
        self.calibration = calibration
        self.realism = realism

    def check(self, estimator, reward: str) -> None:
        if reward != "mean":
            raise UsageError(f"tune.method=select ranks draws by the estimate; set "
                             f"tune.reward=mean (not {reward})")

    def tune(self, ctx: TuneContext) -> None:
        generator, discriminator, meta = ctx.plain_start(self.name)
        selector = Selector(read_estimator_file(ctx.rnd.estimator), self.acceptance,
                            self.temperature, realism=self.realism,
                            critic=discriminator if self.realism > 0 else None)
        generator.eval()
        selector.calibrate(generator, self.calibration, ctx.cfg.seed + ctx.rnd.index)
        sampler = Sampler(generator, selector=selector)
        # What a sample costs, measured on a real draw (the calibration scored every draw).
        labels = torch.arange(256) % generator.num_classes
        start = time.perf_counter()
        draw_latents(sampler, labels, torch.Generator().manual_seed(ctx.cfg.seed))
        selector.seconds_per_image = (time.perf_counter() - start) / len(labels)
        ctx.tracker.metrics({"tune/select/seconds_per_image": selector.seconds_per_image,
                             **{f"tune/select/threshold_{c}": float(t)
                                for c, t in enumerate(selector.thresholds)},
                             **{f"tune/select/critic_threshold_{c}": float(t)
                                for c, t in enumerate(selector.critic_thresholds
                                                      if self.realism > 0 else [])}}, step=0)
        log.info("tune: select keeps %.0f %% of draws%s%s; %.4f s per image",
                 100 * self.acceptance,
                 "" if self.temperature is None else f" (softmax, τ={self.temperature})",
                 f", none of the {100 * self.realism:.0f} % the discriminator rates least real"
                 if self.realism > 0 else "", selector.seconds_per_image)
        ctx.save(Tuned(generator, discriminator, int(meta.get("iteration") or 0)),
                 meta["model"], sampler=sampler_state(sampler))
