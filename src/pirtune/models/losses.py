"""ACGAN losses of the PIR paper (section 2.1 and appendix C.1) as pure functions.

The paper writes every term as a log-likelihood to *maximise*; these functions
return the negated sums, to minimise. The discriminator's source output is the
pre-tanh value ``a`` with P(real) = (1 + tanh a) / 2 = sigmoid(2a) (see
``networks``), so ``2a`` is used as a logit.

``loss="hinge"`` (not in the paper) replaces both source terms by the hinge
loss of SAGAN/BigGAN, on the same source value ``a``: the discriminator
minimises relu(1 − a_real) + relu(1 + a_fake) and the generator −a_fake. The
class terms are the paper's in both cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DiscriminatorLoss:
    """Negated L_discriminator = L_fake image + L_real image + w_real class·L_real class."""

    total: torch.Tensor
    real: torch.Tensor  # -L_real image
    fake: torch.Tensor  # -L_fake image
    real_class: torch.Tensor  # -L_real class (unweighted)


@dataclass(frozen=True)
class GeneratorLoss:
    """Negated L_generator = L_fake image fools + w_fake class·L_fake class."""

    total: torch.Tensor
    fools: torch.Tensor  # -L_fake image fools
    fake_class: torch.Tensor  # -L_fake class (unweighted)


def log_p_real(source: torch.Tensor) -> torch.Tensor:
    """log P(D_source = real) for pre-tanh source values."""
    return F.logsigmoid(2 * source)


def log_p_fake(source: torch.Tensor) -> torch.Tensor:
    """log P(D_source = fake) for pre-tanh source values."""
    return F.logsigmoid(-2 * source)


SourceLoss = Literal["paper", "hinge"]


def discriminator_loss(
    real_source: torch.Tensor,
    fake_source: torch.Tensor,
    real_class_logits: torch.Tensor,
    real_labels: torch.Tensor,
    w_real_class: float = 1.0,
    loss: SourceLoss = "paper",
) -> DiscriminatorLoss:
    """The discriminator's loss (C.1); no fake-class term, so D never helps G classify."""
    if loss == "hinge":
        real = F.relu(1 - real_source).mean()
        fake = F.relu(1 + fake_source).mean()
    else:
        real = -log_p_real(real_source).mean()
        fake = -log_p_fake(fake_source).mean()
    real_class = F.cross_entropy(real_class_logits, real_labels)
    return DiscriminatorLoss(real + fake + w_real_class * real_class, real, fake, real_class)


def generator_loss(
    fake_source: torch.Tensor,
    fake_class_logits: torch.Tensor,
    fake_labels: torch.Tensor,
    w_fake_class: float = 1.5,
    loss: SourceLoss = "paper",
) -> GeneratorLoss:
    """The generator's loss (2.1, C.1): maximise log P(real), not minimise log P(fake)."""
    fools = -fake_source.mean() if loss == "hinge" else -log_p_real(fake_source).mean()
    fake_class = F.cross_entropy(fake_class_logits, fake_labels)
    return GeneratorLoss(fools + w_fake_class * fake_class, fools, fake_class)
