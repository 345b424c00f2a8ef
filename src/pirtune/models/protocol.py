"""What pirtune needs of a generator: the ``ImageGenerator`` protocol.

The stages, the evaluation, the four-choice search and the web app use a
generator only through these attributes and methods, so any ``nn.Module``
that has them plugs in; the ACGAN's ``Generator`` is one, the unconditional
``DCGANGenerator`` another. Generators are saved and loaded as *bundles*
(``pirtune.models.bundle.save_bundle``/``load_bundle``): the weights and the
``_target_`` config that builds the generator and its discriminator, whatever
their classes. Tuning also needs the bundle's discriminator, trained with the
ACGAN's losses: it maps images to (source value [B], class logits [B, C]).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ImageGenerator(Protocol):
    """A generator of [0, 1] images from latents and classes.

    Attributes:
        latent_dim: size of a latent z.
        num_classes: classes it draws (1 for an unconditional generator).
        resolution: side of its square images in pixels.
    """

    latent_dim: int
    num_classes: int
    resolution: int

    def images(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, R, R] in [0, 1] for z [B, latent_dim] and labels [B]; differentiable."""
        ...

    def features(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The first layer's features [B, F], where GANSpace finds its directions."""
        ...

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (what the discriminator sees during training)."""
        ...
