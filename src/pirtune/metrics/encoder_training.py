"""Training and held-out evaluation of the landscape encoder (``pirtune.metrics.encoder``)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pirtune.data.landscapes import render_batch
from pirtune.metrics.encoder import (
    MAX_BLUR_SIGMA,
    RESOLUTION,
    LandscapeEncoder,
    augment,
    blur,
    layout,
    natural_targets,
)

log = logging.getLogger(__name__)


def scenes(first_seed: int, count: int, resolution: int = RESOLUTION) -> tuple[Tensor, Tensor]:
    """``count`` procedural scenes with seeds first_seed, first_seed + 1, …, classes alternating.

    Returns images [count, 3, R, R] in [0, 1] and labels [count] (0 coast, 1 mountain).
    """
    labels = torch.arange(count) % 2
    seeds = range(first_seed, first_seed + count)
    return render_batch(seeds, labels.tolist(), resolution), labels


@dataclass(frozen=True)
class EncoderLoss:
    """One batch's loss and its parts (class cross-entropy, the two regressions' MSE)."""

    total: Tensor
    classes: Tensor
    augmentation: Tensor
    layout: Tensor


def encoder_loss(encoder: LandscapeEncoder, images: Tensor, labels: Tensor,
                 targets: Tensor) -> EncoderLoss:
    """The multi-task loss: class CE + MSE of the scaled augmentation targets + layout MSE.

    Each regression target has about unit spread (layout cells as the network's
    input is centred), so the three terms are summed with equal weights.
    """
    out = encoder.heads(images)
    classes = F.cross_entropy(out["class"], labels)
    augmentation = F.mse_loss(out["augmentation"], targets)
    layout_loss = F.mse_loss(out["layout"], (layout(images) - 0.5) / 0.25)
    return EncoderLoss(classes + augmentation + layout_loss, classes, augmentation, layout_loss)


def train_encoder(images: Tensor, labels: Tensor, steps: int, batch_size: int = 128,
                  lr: float = 2e-3, weight_decay: float = 1e-4, seed: int = 0,
                  encoder: LandscapeEncoder | None = None,
                  log_every: int = 100) -> LandscapeEncoder:
    """Train an encoder on ``images`` [N, 3, 32, 32] with fresh augmentations every batch.

    AdamW with a one-cycle schedule (warm-up 10 % of the steps, cosine decay);
    batches are drawn with replacement by a generator seeded with ``seed``, which
    also draws the augmentations and (through ``torch.manual_seed``) the weights.
    """
    torch.manual_seed(seed)
    encoder = encoder or LandscapeEncoder()
    encoder = encoder.to(memory_format=torch.channels_last).train()
    rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=0.1)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        index = torch.randint(len(images), (batch_size,), generator=rng)
        batch, targets = augment(images[index], rng)
        loss = encoder_loss(encoder, batch.contiguous(memory_format=torch.channels_last),
                            labels[index], targets)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps:
            log.info("step %d/%d loss %.4f (class %.4f, augmentation %.4f, layout %.4f) %.0f s",
                     step, steps, loss.total.item(), loss.classes.item(),
                     loss.augmentation.item(), loss.layout.item(), time.perf_counter() - start)
    return encoder.to(memory_format=torch.contiguous_format).eval()


@dataclass(frozen=True)
class HeldOut:
    """The encoder on scenes it never saw.

    Attributes:
        class_accuracy: share of clean scenes whose class it reads right.
        class_accuracy_augmented: the same on randomly augmented scenes.
        blur_mae_px: mean absolute error of the blur σ read back from scenes
            blurred by σ ~ U[0, 1.5] px (nothing else applied).
        blur_mae_px_augmented: the same on randomly augmented scenes.
        log_gain_mae: mean absolute error of the per-channel log gains read back
            from randomly augmented scenes.
        layout_mae: mean absolute error of the 4×4 mean colours (pixel units).
    """

    images: int
    class_accuracy: float
    class_accuracy_augmented: float
    blur_mae_px: float
    blur_mae_px_augmented: float
    log_gain_mae: float
    layout_mae: float

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate(encoder: LandscapeEncoder, images: Tensor, labels: Tensor,
             seed: int = 1) -> HeldOut:
    """Held-out figures of ``encoder`` on ``images`` [N, 3, 32, 32] with ``labels`` [N]."""
    encoder.eval()
    rng = torch.Generator().manual_seed(seed)

    def outputs(batch: Tensor) -> dict[str, Tensor]:
        parts = [encoder.heads(batch[i:i + 500]) for i in range(0, len(batch), 500)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    clean = outputs(images)
    sigma = MAX_BLUR_SIGMA * torch.rand(len(images), generator=rng)
    blurred = outputs(blur(images, sigma))
    augmented_images, targets = augment(images, rng)
    augmented = outputs(augmented_images)
    read = natural_targets(augmented["augmentation"])
    truth = natural_targets(targets)
    layout_read = augmented["layout"] * 0.25 + 0.5
    return HeldOut(
        images=len(images),
        class_accuracy=_accuracy(clean["class"], labels),
        class_accuracy_augmented=_accuracy(augmented["class"], labels),
        blur_mae_px=float((natural_targets(blurred["augmentation"])[:, 0] - sigma).abs().mean()),
        blur_mae_px_augmented=float((read[:, 0] - truth[:, 0]).abs().mean()),
        log_gain_mae=float((read[:, 1:4] - truth[:, 1:4]).abs().mean()),
        layout_mae=float((layout_read - layout(augmented_images)).abs().mean()),
    )


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean())


def parameter_count(encoder: LandscapeEncoder) -> int:
    return sum(p.numel() for p in encoder.parameters())

