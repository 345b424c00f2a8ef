"""ACGAN losses of the PIR paper (section 2.1 and appendix C.1) as pure functions.

The paper writes every term as a log-likelihood to *maximise*; these functions
return the negated sums, to minimise. The discriminator's source output is the
pre-tanh value ``a`` with P(real) = (1 + tanh a) / 2 = sigmoid(2a) (see
``networks``), so ``2a`` is used as a logit.

``loss="hinge"`` (not in the paper) replaces both source terms by the hinge
loss of SAGAN/BigGAN, on the same source value ``a``: the discriminator
minimises relu(1 − a_real) + relu(1 + a_fake) and the generator −a_fake. The
class terms are the paper's in both cases.

With a twin classifier (TAC-GAN, Gong et al. 2019; ``Discriminator(head="tac")``)
D also learns to classify the *fakes* by their intended class, and the
generator's class term becomes CE(classifier) − CE(twin): the twin cancels the
pull toward the easiest-to-classify images that costs an ACGAN its diversity.
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
    fake_twin: torch.Tensor | None = None  # the twin classifier's CE on fakes (TAC)


@dataclass(frozen=True)
class GeneratorLoss:
    """Negated L_generator = L_fake image fools + w_fake class·L_fake class."""

    total: torch.Tensor
    fools: torch.Tensor  # -L_fake image fools
    fake_class: torch.Tensor  # -L_fake class (unweighted; minus the twin's CE under TAC)


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
    fake_twin_logits: torch.Tensor | None = None,
    fake_labels: torch.Tensor | None = None,
) -> DiscriminatorLoss:
    """The discriminator's loss (C.1); no fake-class term, so D never helps G classify.

    With ``fake_twin_logits`` (TAC) the twin classifier's cross-entropy on the
    fakes' intended ``fake_labels`` is added with the class weight.
    """
    if loss == "hinge":
        real = F.relu(1 - real_source).mean()
        fake = F.relu(1 + fake_source).mean()
    else:
        real = -log_p_real(real_source).mean()
        fake = -log_p_fake(fake_source).mean()
    real_class = F.cross_entropy(real_class_logits, real_labels)
    total = real + fake + w_real_class * real_class
    if fake_twin_logits is None:
        return DiscriminatorLoss(total, real, fake, real_class)
    if fake_labels is None:
        raise ValueError("the twin classifier's loss needs the fakes' classes")
    twin = F.cross_entropy(fake_twin_logits, fake_labels)
    return DiscriminatorLoss(total + w_real_class * twin, real, fake, real_class, twin)


def generator_loss(
    fake_source: torch.Tensor,
    fake_class_logits: torch.Tensor,
    fake_labels: torch.Tensor,
    w_fake_class: float = 1.5,
    loss: SourceLoss = "paper",
    fake_twin_logits: torch.Tensor | None = None,
) -> GeneratorLoss:
    """The generator's loss (2.1, C.1): maximise log P(real), not minimise log P(fake).

    With ``fake_twin_logits`` (TAC) the class term is CE(classifier) − CE(twin).
    """
    fools = -fake_source.mean() if loss == "hinge" else -log_p_real(fake_source).mean()
    fake_class = F.cross_entropy(fake_class_logits, fake_labels)
    if fake_twin_logits is not None:
        fake_class = fake_class - F.cross_entropy(fake_twin_logits, fake_labels)
    return GeneratorLoss(fools + w_fake_class * fake_class, fools, fake_class)
