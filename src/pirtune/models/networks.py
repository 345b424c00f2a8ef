"""The ACGAN generator and discriminator of the PIR paper, appendix C.2.

Both are plain ``nn.Module``s. At ``width=1``, ``resolution=64``,
``norm="none"`` they are exactly the paper's networks:

* Generator: one-hot class concatenated to a 64-unit latent (C.1), a
  fully-connected map to 4×4×512, then five steps of [nearest-neighbour
  upsample ×2 (not on the first step), pad 1, 3×3 conv stride 1, LeakyReLU 0.2]
  with depths 512, 256, 128, 64 and 3, the last with tanh instead.
* Discriminator: six 3×3 convs with strides 2, 1, 2, 1, 2, 1 and depths 16, 32,
  64, 128, 256, 512, each followed by batch norm and LeakyReLU 0.2, dropout
  after the 1st, 3rd and 5th, then fully-connected source and class heads.

Choices the paper leaves open, stated here once:

* The paper puts no non-linearity after the generator's fully-connected layer,
  and none is added.
* The source head ends in tanh (C.2). Its output ``s = tanh(a)`` in (-1, 1) is
  read as P(real) = (1 + s) / 2, which equals sigmoid(2a); so the network
  returns the pre-tanh value ``a`` and the losses use ``2a`` as a logit, which
  is the same function computed without saturating ``log``.
* Dropout probability is not given; 0.3 follows the reference ACGAN code.
* ``width`` scales every depth (rounded, at least 1 channel group of 4), and
  ``resolution`` (a power of two, ≥ 8) sets the number of upsampling steps:
  depths keep the paper's pattern of halving towards the output.
* ``Discriminator(norm="spectral")`` (not in the paper) replaces the
  discriminator's batch norm by spectral normalisation of every conv and
  linear layer (Miyato et al. 2018): the usual partner of the hinge loss and
  of ``pirtune.models.augment``.
* ``Discriminator(head=...)`` (not in the paper) picks how the class enters
  D: ``"ac"`` is the paper's auxiliary classifier; ``"projection"`` adds the
  projection term ⟨embed(c), h⟩ to the source value (Miyato & Koyama 2018), so
  D judges realism *given* the class; ``"tac"`` adds a twin classifier trained
  on fakes, which the generator's class loss subtracts (TAC-GAN, Gong et al.
  2019). Both are published fixes for the diversity an auxiliary classifier
  costs. The class head stays in every case (the losses and the tuning watch
  read it).
* ``norm="batch"`` adds batch norm after the generator's FC layer and each
  hidden conv. The paper uses none; on a CPU budget it is what makes a
  quarter-width generator draw scenes rather than grey (see README, "CPU
  default").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GeneratorNorm = Literal["none", "batch"]
DiscriminatorNorm = Literal["batch", "spectral"]
DiscriminatorHead = Literal["ac", "projection", "tac"]
DISCRIMINATOR_HEADS = ("ac", "projection", "tac")

LATENT_FC_DEPTH = 512  # C.2: the FC layer maps the latent to a 4×4×512 image
DISCRIMINATOR_DEPTHS = (16, 32, 64, 128, 256, 512)
DISCRIMINATOR_STRIDES = (2, 1, 2, 1, 2, 1)
DISCRIMINATOR_DROPOUT_AFTER = (0, 2, 4)  # after the 1st, 3rd and 5th layers


def scaled_depth(depth: int, width: float) -> int:
    """A depth multiplied by ``width``, rounded, never below 4 channels."""
    return max(4, round(depth * width))


def upsampling_steps(resolution: int) -> int:
    """Number of ×2 upsamplings from 4×4 to ``resolution``."""
    steps = math.log2(resolution / 4)
    if resolution < 8 or steps != int(steps):
        raise ValueError(
            f"resolution {resolution} is not supported; use a power of two ≥ 8 (the paper uses 64)"
        )
    return int(steps)


class Generator(nn.Module):
    """ACGAN generator: (latent, class) → image in [-1, 1].

    Args:
        latent_dim: size of the noise vector z (64 in the paper).
        num_classes: number of image classes; the one-hot class is concatenated to z.
        resolution: output side in pixels, a power of two ≥ 8.
        width: multiplier on every depth (1.0 is the paper).
        norm: ``"none"`` (the paper) or ``"batch"``.
    """

    def __init__(
        self,
        latent_dim: int = 64,
        num_classes: int = 2,
        resolution: int = 64,
        width: float = 1.0,
        norm: GeneratorNorm = "none",
    ) -> None:
        super().__init__()
        if norm not in ("none", "batch"):
            raise ValueError(f"generator norm {norm!r} is unknown; choose 'none' or 'batch'")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.resolution = resolution
        upsamplings = upsampling_steps(resolution)
        fc_depth = scaled_depth(LATENT_FC_DEPTH, width)
        # At 64×64: 512, 256, 128, 64 — the depth halves at every upsampling.
        hidden = [scaled_depth(min(LATENT_FC_DEPTH, 64 * 2 ** (upsamplings - 1 - i)), width)
                  for i in range(upsamplings)]
        self.fc = nn.Linear(latent_dim + num_classes, fc_depth * 4 * 4)
        self.fc_norm = nn.BatchNorm2d(fc_depth) if norm == "batch" else nn.Identity()
        blocks: list[nn.Module] = []
        depths = [fc_depth, *hidden]
        for i, (d_in, d_out) in enumerate(zip(depths[:-1], depths[1:], strict=True)):
            blocks.append(self._block(d_in, d_out, upsample=i > 0, norm=norm))
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(depths[-1], 3, kernel_size=3, padding=1),
            nn.Tanh(),
        )
        self._fc_depth = fc_depth

    @staticmethod
    def _block(d_in: int, d_out: int, *, upsample: bool, norm: GeneratorNorm) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        layers.append(nn.Conv2d(d_in, d_out, kernel_size=3, padding=1))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(d_out))
        layers.append(nn.LeakyReLU(0.2))
        return nn.Sequential(*layers)

    def features(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The FC layer's output [B, 512·16] for z and the one-hot class (GANSpace's space)."""
        onehot = F.one_hot(labels, self.num_classes).to(z.dtype)
        return self.fc(torch.cat([z, onehot], dim=1))  # [B, latent+classes] -> [B, 512·16]

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for latents ``z`` [B, latent_dim] and class indices ``labels`` [B]."""
        x = self.features(z, labels)
        x = self.fc_norm(x.view(-1, self._fc_depth, 4, 4))  # -> [B, 512, 4, 4]
        x = self.blocks(x)  # -> [B, 64, R/2, R/2]
        return self.to_rgb(x)  # -> [B, 3, R, R]

    def images(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], differentiable (``pirtune.models.protocol.ImageGenerator``)."""
        return (self(z, labels) + 1) / 2


@dataclass(frozen=True)
class DiscriminatorOutput:
    """Everything D says about a batch of images."""

    source: torch.Tensor        # [B] pre-tanh source value (projection term included)
    class_logits: torch.Tensor  # [B, C] the auxiliary classifier
    twin_logits: torch.Tensor | None = None  # [B, C] TAC's twin classifier, else None


class Discriminator(nn.Module):
    """ACGAN discriminator: image → (source value, class logits).

    Args:
        num_classes: number of classes of the class head.
        resolution: input side in pixels, divisible by 8.
        width: multiplier on every depth (1.0 is the paper).
        dropout: dropout probability after the 1st, 3rd and 5th layers.
        norm: ``"batch"`` (the paper) or ``"spectral"``.
        head: ``"ac"`` (the paper), ``"projection"`` or ``"tac"`` (module docstring).
    """

    def __init__(
        self,
        num_classes: int = 2,
        resolution: int = 64,
        width: float = 1.0,
        dropout: float = 0.3,
        norm: DiscriminatorNorm = "batch",
        head: DiscriminatorHead = "ac",
    ) -> None:
        super().__init__()
        if resolution % 8:
            raise ValueError(f"resolution {resolution} is not supported; use a multiple of 8")
        if norm not in ("batch", "spectral"):
            raise ValueError(
                f"discriminator norm {norm!r} is unknown; choose 'batch' or 'spectral'")
        if head not in DISCRIMINATOR_HEADS:
            raise ValueError(f"model.discriminator.head={head!r} is unknown; choose one of "
                             f"{', '.join(DISCRIMINATOR_HEADS)}")
        self.head = head
        spectral = norm == "spectral"
        wrap = nn.utils.parametrizations.spectral_norm if spectral else (lambda layer: layer)
        layers: list[nn.Module] = []
        d_in = 3
        for i, (depth, stride) in enumerate(
            zip(DISCRIMINATOR_DEPTHS, DISCRIMINATOR_STRIDES, strict=True)
        ):
            d_out = scaled_depth(depth, width)
            layers.append(wrap(nn.Conv2d(d_in, d_out, kernel_size=3, stride=stride, padding=1)))
            if not spectral:
                layers.append(nn.BatchNorm2d(d_out))
            layers.append(nn.LeakyReLU(0.2))
            if i in DISCRIMINATOR_DROPOUT_AFTER:
                layers.append(nn.Dropout(dropout))
            d_in = d_out
        self.features = nn.Sequential(*layers)
        features = d_in * (resolution // 8) ** 2
        self.source = wrap(nn.Linear(features, 1))
        self.classify = wrap(nn.Linear(features, num_classes))
        # Projection: one vector per class, dotted with the features (Miyato & Koyama).
        self.embed = wrap(nn.Embedding(num_classes, features)) if head == "projection" else None
        self.twin = wrap(nn.Linear(features, num_classes)) if head == "tac" else None

    @property
    def needs_labels(self) -> bool:
        """Whether the source value depends on the class (the projection head)."""
        return self.embed is not None

    def heads(self, images: torch.Tensor, labels: torch.Tensor | None = None
              ) -> DiscriminatorOutput:
        """All of D's outputs for ``images`` [B, 3, R, R] of classes ``labels`` [B].

        The projection head needs ``labels``; the others ignore them.
        """
        h = self.features(images).flatten(1)  # [B, 3, R, R] -> [B, 512·(R/8)²]
        source = self.source(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("the projection discriminator needs the images' classes")
            source = source + (self.embed(labels) * h).sum(1)  # ⟨embed(c), h⟩
        twin = self.twin(h) if self.twin is not None else None
        return DiscriminatorOutput(source, self.classify(h), twin)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh source values [B] and class logits [B, num_classes].

        P(real) = (1 + tanh(a)) / 2 = sigmoid(2a); see the module docstring.
        """
        out = self.heads(images, labels)
        return out.source, out.class_logits
