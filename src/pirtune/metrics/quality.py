"""The metrics (see the package docstring), as plain functions of images and a feature net."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from pirtune.errors import UsageError


def _check_images(images: Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise UsageError(f"{name} must be float images [N, 3, H, W] in [0, 1], not "
                         f"{tuple(images.shape)} {images.dtype}")
    if len(images) < 2:
        raise UsageError(f"{name} holds {len(images)} image(s); the metrics need at least 2")


@torch.no_grad()
def extract(network: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """The network's features [N, d] of images [N, 3, H, W] in [0, 1], in batches."""
    _check_images(images, "images")
    network.eval()
    return torch.cat([network(images[i:i + batch_size]).flatten(1).double()
                      for i in range(0, len(images), batch_size)])


class _Features(nn.Module):
    """A feature network wrapped for torchmetrics (which hands it images, batch by batch)."""

    def __init__(self, network: nn.Module, dim: int) -> None:
        super().__init__()
        self.network = network
        self.num_features = dim

    def forward(self, images: Tensor) -> Tensor:
        return self.network(images).flatten(1)


def _dim(network: nn.Module, images: Tensor) -> int:
    with torch.no_grad():
        return int(network.eval()(images[:2]).flatten(1).shape[1])


def fid(real: Tensor, fake: Tensor, network: nn.Module, batch_size: int = 256) -> float:
    """Fréchet distance between the Gaussians fitted to real and fake features (torchmetrics)."""
    _check_images(real, "real"), _check_images(fake, "fake")
    metric = FrechetInceptionDistance(feature=_Features(network, _dim(network, real)),
                                      normalize=True, reset_real_features=True)
    metric.set_dtype(torch.float64)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), batch_size):
            metric.update(images[i:i + batch_size], real=is_real)
    return float(metric.compute())


def kid(real: Tensor, fake: Tensor, network: nn.Module, subsets: int = 50,
        subset_size: int | None = None, batch_size: int = 256) -> tuple[float, float]:
    """Kernel Inception Distance (cubic polynomial kernel MMD², torchmetrics): mean and SD
    over ``subsets`` random subsets of ``subset_size`` (default: the smaller set, ≤ 1000)."""
    _check_images(real, "real"), _check_images(fake, "fake")
    size = subset_size or min(len(real), len(fake), 1000)
    if size > min(len(real), len(fake)):
        raise UsageError(f"subset_size={size} exceeds the smaller set "
                         f"({min(len(real), len(fake))} images); give a smaller one")
    metric = KernelInceptionDistance(feature=_Features(network, _dim(network, real)),
                                     subsets=subsets, subset_size=size, normalize=True)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), batch_size):
            metric.update(images[i:i + batch_size], real=is_real)
    mean, sd = metric.compute()
    return float(mean), float(sd)


def _radii(features: Tensor, k: int) -> Tensor:
    """Each sample's distance to its k-th nearest neighbour in its own set (itself excluded)."""
    if not 1 <= k < len(features):
        raise UsageError(f"k={k} nearest neighbours need more than {k} samples, not "
                         f"{len(features)}")
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # the 1st is the sample itself (0)


def precision_recall(real: Tensor, fake: Tensor, k: int = 5) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of features [N, d], [M, d]."""
    real_radii, fake_radii = _radii(real, k), _radii(fake, k)
    cross = torch.cdist(fake, real)                                       # [M, N]
    precision = (cross <= real_radii[None, :]).any(dim=1).double().mean()
    recall = (fake_radii[None, :] >= cross.T).any(dim=1).double().mean()
    return float(precision), float(recall)


def density_coverage(real: Tensor, fake: Tensor, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of features [N, d] (real) and [M, d] (fake)."""
    real_radii = _radii(real, k)
    inside = torch.cdist(fake, real) <= real_radii[None, :]               # [M, N]
    density = inside.double().sum() / (k * len(fake))
    coverage = inside.any(dim=0).double().mean()
    return float(density), float(coverage)


@torch.no_grad()
def class_accuracy(classifier: nn.Module, images: Tensor, labels: Tensor,
                   batch_size: int = 256) -> dict[int, float]:
    """The share of images of each class that ``classifier`` (logits [N, C]) reads as that class."""
    classifier.eval()
    predicted = torch.cat([classifier(images[i:i + batch_size]).argmax(1)
                           for i in range(0, len(images), batch_size)])
    return {int(c): float((predicted[labels == c] == c).double().mean())
            for c in labels.unique()}


@dataclass(frozen=True)
class Quality:
    """One comparison of a set of images with real ones (see the package docstring)."""

    fid: float
    kid: float
    kid_sd: float
    precision: float
    recall: float
    density: float
    coverage: float
    class_accuracy: dict[int, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def quality(real: Tensor, fake: Tensor, network: nn.Module, k: int = 5,
            classifier: nn.Module | None = None, fake_labels: Tensor | None = None,
            kid_subsets: int = 50) -> Quality:
    """Every metric of ``fake`` against ``real`` in ``network``'s feature space.

    Class readability is computed when a ``classifier`` and the fake images'
    intended classes (``fake_labels``) are given.
    """
    real_features, fake_features = extract(network, real), extract(network, fake)
    precision, recall = precision_recall(real_features, fake_features, k)
    density, coverage = density_coverage(real_features, fake_features, k)
    kid_mean, kid_sd = kid(real, fake, network, subsets=kid_subsets)
    readability = (class_accuracy(classifier, fake, fake_labels)
                   if classifier is not None and fake_labels is not None else None)
    return Quality(fid(real, fake, network), kid_mean, kid_sd, precision, recall, density,
                   coverage, readability)
