"""``tune.method=distill``: G learns a reweighted copy of what it draws, no estimator gradient."""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from scipy.optimize import brentq
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from pirtune.errors import UsageError
from pirtune.models.acgan import ACGANModule
from pirtune.models.bundle import draw
from pirtune.tuning import TuningMethod
from pirtune.tuning.base import TuneContext, fit
from pirtune.tuning.reward import Reward

log = logging.getLogger(__name__)


def ess_share(weights: torch.Tensor) -> float:
    """Kish's effective sample size as a share of the pool: (Σw)² / (N·Σw²)."""
    weights = weights.double()
    return float(weights.sum() ** 2 / (len(weights) * weights.pow(2).sum()))


def tilt_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Normalised weights ∝ exp(R/β) [N] (stable: the largest exponent is 0)."""
    return torch.softmax(rewards.double() / beta, dim=0)


def beta_for_share(rewards: torch.Tensor, share: float) -> float:
    """The temperature β whose tilt keeps an effective ``share`` of the pool.

    The ESS share falls from 1 (β → ∞, uniform) towards 1/N (β → 0) as β
    shrinks; solved on log β with ``scipy.optimize.brentq``.
    """
    spread = float(rewards.max() - rewards.min())
    if spread == 0:
        raise UsageError("the estimator scores every pooled image alike; distill has nothing "
                         "to tilt towards")

    def gap(log_beta: float) -> float:
        return ess_share(tilt_weights(rewards, math.exp(log_beta))) - share

    low, high = math.log(spread * 1e-6), math.log(spread * 1e6)
    return math.exp(brentq(gap, low, high, xtol=1e-6))


class TiltedPoolDataModule(L.LightningDataModule):
    """D's "real" batches: the pooled images resampled with replacement ∝ their weights.

    Args:
        images: the pool, uint8 [N, 3, R, R] (as the real data are stored).
        labels: their classes [N].
        weights: [N], summing to 1.
        batch_size: images per batch.
        batches: batches in all (``tune.steps``).
        seed: the resampling's seed.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                 batch_size: int, batches: int, seed: int) -> None:
        super().__init__()
        self.train_set = TensorDataset(images, labels)
        self.weights, self.batch_size, self.batches, self.seed = weights, batch_size, batches, seed

    def train_dataloader(self) -> DataLoader:
        sampler = WeightedRandomSampler(self.weights, self.batches * self.batch_size,
                                        replacement=True,
                                        generator=torch.Generator().manual_seed(self.seed))
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                          drop_last=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        return images.float().div_(127.5).sub_(1.0), labels   # uint8 -> [-1, 1]


class DistillModule(ACGANModule):
    """Pre-training's ACGAN updates, at tuning's learning rate, on the tilted pool.

    The estimator is kept for the tuning watch's proxy only: no loss reads it,
    so no gradient ever passes through it.
    """

    log_prefix = "tune/train"

    def __init__(self, generator, discriminator, estimator, g_optimizer, d_optimizer,
                 **kwargs) -> None:
        super().__init__(generator, discriminator, g_optimizer, d_optimizer, **kwargs)
        self.estimator = estimator


class DistillMethod(TuningMethod):
    """Fine-tune G's weights toward the tilted distribution of its own samples.

    A pool of ``pool`` samples of the untuned generator is scored once by the
    estimator (no gradient); D's real batch is then resampled from it
    ∝ exp(R/β), and G and D train with pre-training's losses (from the
    start bundle's D and settings, at ``tune.lr``, for ``tune.steps``). G learns a
    reweighted copy of what it already draws; the result is a plain
    generator bundle.

    Args:
        beta: the tilt's temperature β > 0 in PIR units; ``None``: solved so the
            tilt keeps an effective ``keep`` share of the pool.
        keep: the effective sample share (Kish) of the tilted pool, in (0, 1],
            when ``beta`` is ``None``.
        pool: samples drawn from the untuned generator.
    """

    name = "distill"

    def __init__(self, beta: float | None = None, keep: float = 0.3, pool: int = 8192) -> None:
        if beta is not None and not beta > 0:
            raise UsageError(f"tune.method.beta={beta} must be positive (the tilt's "
                             "temperature), or null to set it from tune.method.keep")
        if not 0 < keep <= 1:
            raise UsageError(f"tune.method.keep={keep} must lie in (0, 1] (the tilted pool's "
                             "effective share, e.g. 0.3)")
        if pool < 64:
            raise UsageError(f"tune.method.pool={pool} must be at least 64 samples")
        self.beta, self.keep, self.pool = beta, keep, pool

    @torch.no_grad()
    def tilted_pool(self, ctx: TuneContext, batch_size: int) -> TiltedPoolDataModule:
        """The untuned generator's pool, scored, as D's tilted real data."""
        generator, _, _ = ctx.plain_start(self.name)
        images, labels = draw(generator, self.pool, ctx.cfg.seed + 1000 * ctx.rnd.index)
        reward = Reward(ctx.estimator, ctx.cfg.reward, ctx.cfg.reward_lambda)
        rewards = torch.cat([reward(images[i:i + 256])[0].float()
                             for i in range(0, len(images), 256)])
        beta = self.beta if self.beta is not None else beta_for_share(rewards, self.keep)
        weights = tilt_weights(rewards, beta)
        tilted_mean = float((weights * rewards.double()).sum())
        ctx.tracker.metrics({"tune/distill/beta": beta, "tune/distill/ess_share":
                             ess_share(weights), "tune/distill/pool_reward": float(rewards.mean()),
                             "tune/distill/tilted_reward": tilted_mean}, step=0)
        log.info("tune: distill pool of %d: reward %.4f, tilted %.4f (β %.4g, effective share "
                 "%.2f)", self.pool, float(rewards.mean()), tilted_mean, beta,
                 ess_share(weights))
        pixels = (images * 255).round().to(torch.uint8)
        return TiltedPoolDataModule(pixels, labels, weights.float(), batch_size,
                                    ctx.cfg.steps, ctx.cfg.seed + ctx.rnd.index)

    def tune(self, ctx: TuneContext) -> None:
        from pirtune.models.tuning import module_from_bundle

        cfg = ctx.cfg
        real = ctx.real_data()
        pool = self.tilted_pool(ctx, real.batch_size)

        def build():
            return module_from_bundle(DistillModule, ctx.rnd.start, ctx.estimator, cfg.lr,
                                      ema_decay=cfg.ema_decay, compile_mode=cfg.compile_mode)

        done = fit(ctx, build, pool, real=real.train_set)
        if done is not None:
            module, meta = done
            ctx.save(module, meta["model"])
