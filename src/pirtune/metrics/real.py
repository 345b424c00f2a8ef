"""Real images for the metrics: a seeded draw from the dataset a generator learns from."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from pirtune.data.procedural import CLASSES as PROCEDURAL_CLASSES
from pirtune.metrics.encoder import LandscapeEncoder, load_encoder


def draw(dataset: Dataset, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` distinct items of a dataset of (uint8 image [3, R, R], class), picked by a
    permutation seeded with ``seed``.

    Returns images [count, 3, R, R] in [0, 1] and classes [count].
    """
    size = len(dataset)  # type: ignore[arg-type]
    if not 1 <= count <= size:
        raise ValueError(f"cannot draw {count} of {size} images")
    picked = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count]
    if isinstance(dataset, TensorDataset):  # the procedural scenes, held in memory
        images, labels = dataset.tensors[0][picked], dataset.tensors[1][picked]
    else:
        items = [dataset[int(i)] for i in picked]
        images = torch.stack([image for image, _ in items])
        labels = torch.tensor([int(label) for _, label in items])
    return images.float() / 255, labels.long()


def class_names(dataset: Dataset) -> tuple[str, ...]:
    """An ImageFolder's class folders, or the procedural scenes' classes."""
    return tuple(getattr(dataset, "classes", PROCEDURAL_CLASSES))


def class_reader(classes: tuple[str, ...],
                 encoder: LandscapeEncoder | None = None) -> nn.Module | None:
    """The landscape encoder's class head (logits [N, C]) when ``classes`` are the classes
    it was trained to read (the procedural coast and mountain), else ``None``.

    ``encoder`` is the one already loaded, if any; else the shipped one is loaded.
    """
    if tuple(classes) != PROCEDURAL_CLASSES:
        return None
    return (encoder or load_encoder()).classifier
