"""What every use of torchvision's ImageNet weights shares: input statistics and the cache.

The VGG16 objectives and the ResNet/Inception estimator backbones both read
weights from torch hub's cache (so an offline machine can be given the file)
and normalise inputs as the weights were trained.
"""

from __future__ import annotations

from pathlib import Path

import torch

# The input statistics torchvision's ImageNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def hub_cache_path(url: str) -> Path:
    """Where torch hub keeps the weights downloaded from ``url`` (follows ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
