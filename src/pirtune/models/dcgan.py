"""An unconditional DCGAN-style generator and its discriminator: a second ``ImageGenerator``.

It draws one class and ignores the class it is given, so it plugs into every
stage and the search unchanged; train it with ``model=dcgan`` (the ACGAN's
losses with no fake-class term: its discriminator's class head only learns
the real images' classes).
"""

from __future__ import annotations

import torch
from torch import nn

from pirtune.models.networks import (
    DiscriminatorOutput,
    GeneratorNorm,
    scaled_depth,
    upsampling_steps,
)


class DCGANGenerator(nn.Module):
    """z → image: a linear layer to 4×4, then upsampling convolutions with batch norm.

    Args:
        latent_dim: size of z.
        resolution: output side in pixels, a power of two ≥ 8.
        width: multiplier on every depth (1.0: 256 channels at 4×4).
        norm: ``"batch"`` (DCGAN's) or ``"none"``.
    """

    num_classes = 1

    def __init__(self, latent_dim: int = 64, resolution: int = 32, width: float = 1.0,
                 norm: GeneratorNorm = "batch") -> None:
        super().__init__()
        if norm not in ("none", "batch"):
            raise ValueError(f"generator norm {norm!r} is unknown; choose 'none' or 'batch'")

        def normalise(depth: int) -> nn.Module:
            return nn.BatchNorm2d(depth) if norm == "batch" else nn.Identity()

        self.latent_dim = latent_dim
        self.resolution = resolution
        # One doubling per depth, 4 -> R; the depth halves at each.
        depths = [scaled_depth(256 // 2 ** i, width) for i in range(upsampling_steps(resolution))]
        self._depth = depths[0]
        self.fc = nn.Linear(latent_dim, depths[0] * 4 * 4)
        blocks: list[nn.Module] = [normalise(depths[0]), nn.ReLU()]
        for d_in, d_out in zip(depths[:-1], depths[1:], strict=True):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(d_in, d_out, kernel_size=3, padding=1),
                       normalise(d_out), nn.ReLU()]
        blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                   nn.Conv2d(depths[-1], 3, kernel_size=3, padding=1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def features(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The linear layer's output [B, 16·depth] (the class is ignored)."""
        return self.fc(z)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, R, R] in [-1, 1] for z [B, latent_dim]; ``labels`` are ignored."""
        x = self.features(z, labels).view(-1, self._depth, 4, 4)  # [B, latent] -> [B, D, 4, 4]
        return self.blocks(x)                                      # -> [B, 3, R, R]

    def images(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], differentiable."""
        return (self(z, labels) + 1) / 2


class DCGANDiscriminator(nn.Module):
    """image → (source value [B], class logits [B, C]): strided convolutions, LeakyReLU.

    Args:
        num_classes: classes of the real images (the auxiliary class head).
        resolution: input side in pixels, a power of two ≥ 8.
        width: multiplier on every depth (1.0: 64 channels in the first layer).
        norm: ``"none"``, or ``"spectral"`` normalisation of every layer (as the
            ACGAN discriminator's, so the CPU experiment's settings apply to both).
        dropout: dropout probability after every hidden layer (0: none).
        head: ``"ac"`` or ``"projection"``, so the CPU experiment's discriminator
            settings apply here too. The DCGAN has one class, and a projection
            ⟨embed(y), φ(x)⟩ with one class is a second linear map of the same
            features as the source head's: the same function class, so both names
            build the plain head. ``"tac"`` (a twin classifier of one class) is refused.
    """

    def __init__(self, num_classes: int = 2, resolution: int = 32, width: float = 1.0,
                 norm: str = "none", dropout: float = 0.0, head: str = "ac") -> None:
        super().__init__()
        if head not in ("ac", "projection"):
            raise ValueError(f"model.discriminator.head={head!r} has no meaning for the "
                             "one-class DCGAN; use ac (or projection, the same head here)")
        if norm not in ("none", "spectral"):
            raise ValueError(f"DCGAN discriminator norm {norm!r} is unknown; "
                             "choose 'none' or 'spectral'")
        wrap = nn.utils.parametrizations.spectral_norm if norm == "spectral" else (lambda m: m)
        # One halving per layer, R -> 4; the depth doubles at each.
        depths = [3, *(scaled_depth(64 * 2 ** i, width)
                       for i in range(upsampling_steps(resolution)))]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(depths[:-1], depths[1:], strict=True):
            layers += [wrap(nn.Conv2d(d_in, d_out, kernel_size=4, stride=2, padding=1)),
                       nn.LeakyReLU(0.2)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        self.source = wrap(nn.Linear(depths[-1] * 4 * 4, 1))
        self.classify = wrap(nn.Linear(depths[-1] * 4 * 4, num_classes))

    needs_labels = False

    def heads(self, images: torch.Tensor, labels: torch.Tensor | None = None
              ) -> DiscriminatorOutput:
        """Source value and class logits (an auxiliary-classifier head; labels unused)."""
        return DiscriminatorOutput(*self(images))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images).flatten(1)  # [B, 3, R, R] -> [B, D·4·4]
        return self.source(h).squeeze(1), self.classify(h)
