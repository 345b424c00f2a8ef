"""The estimator as used to score and steer: frozen, at the use temperature (C.3).

A ``FrozenPIREstimator`` is a copy of a trained network with no trainable
weights, always in eval mode, whose output is the expected PIR at
temperature 0.01, "behaving almost like a max" (C.3), and differentiable
with respect to its input images.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.network import expected_pir

USE_TEMPERATURE = 0.01         # C.3: when evaluating and when steering the GAN


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] → float in [0, 1]; float images pass through."""
    return images.float().div(255.0) if images.dtype == torch.uint8 else images


class FrozenPIREstimator(nn.Module):
    """The estimator as used to score and steer: no trainable weights, always eval.

    Holds a deep copy of ``network``, so training the original further leaves it
    unchanged. Gradients flow to the input images, not to the weights.

    Args:
        network: the trained network (images in [0, 1] → logits [B, bins]).
        temperature: softmax temperature of the estimate (paper: 0.01).
        config: the config that built ``network``, when it was loaded from a file.
    """

    def __init__(self, network: nn.Module, temperature: float = USE_TEMPERATURE,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        if not temperature > 0:
            raise UsageError(f"temperature={temperature} must be positive (the paper uses 0.01)")
        self.network = copy.deepcopy(network).eval().requires_grad_(False)
        self.temperature = temperature
        self.bins: int = network.bins

    def train(self, mode: bool = True) -> FrozenPIREstimator:
        # A parent module's .train() (the tuning module's, every epoch) must not
        # switch BatchNorm back to batch statistics or turn dropout on here.
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (float in [0, 1], or uint8) [B, 3, H, W] → expected PIR [B]."""
        return expected_pir(self.network(to_unit_float(images)), self.temperature)


@torch.no_grad()
def estimate_pir(
    estimator: FrozenPIREstimator, images: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Estimated PIR [N] (on the CPU) of images [N, 3, H, W], scored in batches."""
    device = next(estimator.network.parameters()).device
    chunks = [estimator(images[i:i + batch_size].to(device)).cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0)
