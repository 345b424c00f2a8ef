"""The metrics (see the package docstring), as plain functions of images and a feature net."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from pirtune.errors import UsageError
from pirtune.metrics.encoder import load_encoder


def _check_images(images: Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise UsageError(f"{name} must be float images [N, 3, H, W] in [0, 1], not "
                         f"{tuple(images.shape)} {images.dtype}")
    if len(images) < 2:
        raise UsageError(f"{name} holds {len(images)} image(s); the metrics need at least 2")


def _device(network: nn.Module) -> torch.device:
    return next(network.parameters(), torch.empty(0)).device


@torch.no_grad()
def extract(network: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """The network's features [N, d] (float64, on the CPU) of images [N, 3, H, W] in [0, 1].

    In batches, each moved to the network's device.
    """
    _check_images(images, "images")
    network.eval()
    device = _device(network)
    return torch.cat([network(images[i:i + batch_size].to(device)).flatten(1).double().cpu()
                      for i in range(0, len(images), batch_size)])


class _Given(nn.Module):
    """Hands torchmetrics features that were already extracted (by ``extract``) as they are."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, features: Tensor) -> Tensor:
        return features


def _network(network: nn.Module | None) -> nn.Module:
    """``network``, or the shipped landscape encoder when it is None."""
    return load_encoder() if network is None else network


def _check_features(real: Tensor, fake: Tensor) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise UsageError(f"features must be [N, d] and [M, d] with the same d, not "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    if min(len(real), len(fake)) < 2:
        raise UsageError("the metrics need at least 2 samples in each set")


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to features [N, d] and [M, d]
    (torchmetrics' computation, in float64)."""
    _check_features(real, fake)
    # The features are all here: no gathering across processes (under DDP only rank 0
    # computes the metrics, and a gather would wait for the others forever).
    metric = FrechetInceptionDistance(feature=_Given(real.shape[1]), reset_real_features=True,
                                      sync_on_compute=False)
    metric.set_dtype(torch.float64)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid_from_features(real: Tensor, fake: Tensor, subsets: int = 50,
                      subset_size: int | None = None,
                      seed: int | None = None) -> tuple[float, float]:
    """Kernel Inception Distance of features [N, d] and [M, d] (cubic polynomial kernel MMD²,
    torchmetrics): mean and SD over ``subsets`` random subsets of ``subset_size`` (default:
    the smaller set, ≤ 1000).

    torchmetrics draws the subsets from torch's global generator; with ``seed``
    they are drawn from a forked generator seeded with it, so the figure is
    reproducible and the caller's random state (a training run's) is untouched.
    """
    _check_features(real, fake)
    size = subset_size or min(len(real), len(fake), 1000)
    if size > min(len(real), len(fake)):
        raise UsageError(f"subset_size={size} exceeds the smaller set "
                         f"({min(len(real), len(fake))} images); give a smaller one")
    metric = KernelInceptionDistance(feature=_Given(real.shape[1]), subsets=subsets,
                                     subset_size=size, sync_on_compute=False)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    if seed is None:
        mean, sd = metric.compute()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, sd = metric.compute()
    return float(mean), float(sd)


def fid(real: Tensor, fake: Tensor, network: nn.Module | None = None,
        batch_size: int = 256) -> float:
    """FID of images [N, 3, H, W] and [M, 3, H, W] in [0, 1] in ``network``'s feature space
    (the shipped landscape encoder by default); see ``fid_from_features``."""
    _check_images(real, "real"), _check_images(fake, "fake")
    network = _network(network)
    return fid_from_features(extract(network, real, batch_size),
                             extract(network, fake, batch_size))


def kid(real: Tensor, fake: Tensor, network: nn.Module | None = None, subsets: int = 50,
        subset_size: int | None = None, batch_size: int = 256) -> tuple[float, float]:
    """KID of images in [0, 1] in ``network``'s feature space (the shipped landscape encoder
    by default): mean and SD over subsets; see ``kid_from_features``."""
    _check_images(real, "real"), _check_images(fake, "fake")
    network = _network(network)
    return kid_from_features(extract(network, real, batch_size),
                             extract(network, fake, batch_size), subsets, subset_size)


def _radii(features: Tensor, k: int) -> Tensor:
    """Each sample's distance to its k-th nearest neighbour in its own set (itself excluded)."""
    if not 1 <= k < len(features):
        raise UsageError(f"k={k} nearest neighbours need more than {k} samples, not "
                         f"{len(features)}")
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # the 1st is the sample itself (0)


def precision_recall(real: Tensor, fake: Tensor, k: int = 5,
                     real_counts: Tensor | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of features [N, d], [M, d].

    Args:
        real: the real samples' features [N, d].
        fake: the generated samples' features [M, d].
        k: the k-th nearest neighbour's distance is each sample's radius.
        real_counts: how many times each real sample stands in the real set [N] (a
            multiset resampled with replacement, given by its distinct points): the real
            radii come from the distinct points, since a repeated point's k-NN radius
            would shrink to 0, and recall counts each point with its multiplicity.
            ``None``: each once.
    """
    real_radii, fake_radii = _radii(real, k), _radii(fake, k)
    cross = torch.cdist(fake, real)                                       # [M, N]
    precision = (cross <= real_radii[None, :]).any(dim=1).double().mean()
    covered = (fake_radii[None, :] >= cross.T).any(dim=1).double()       # [N]
    if real_counts is None:
        recall = covered.mean()
    else:
        if real_counts.shape != (len(real),):
            raise UsageError(f"real_counts must hold one count per real sample ({len(real)}), "
                             f"not shape {tuple(real_counts.shape)}")
        if bool((real_counts < 1).any()):
            raise UsageError(f"real_counts must be at least 1 (a real sample in the set), not "
                             f"{real_counts.min().item()}; leave out the samples not in it")
        counts = real_counts.double()
        recall = (covered * counts).sum() / counts.sum()
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
    device = _device(classifier)
    predicted = torch.cat([classifier(images[i:i + batch_size].to(device)).argmax(1).cpu()
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

    def as_dict(self, classes: Sequence[str] | None = None) -> dict:
        """Its fields; with ``classes``, class accuracy keyed by class name (for JSON)."""
        out = asdict(self)
        if classes is not None and self.class_accuracy is not None:
            out["class_accuracy"] = {classes[c]: a for c, a in self.class_accuracy.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping, classes: Sequence[str] | None = None) -> Quality:
        """The inverse of ``as_dict``: class accuracy keyed by name when ``classes`` is given."""
        accuracy = data.get("class_accuracy")
        if accuracy is not None:
            accuracy = {(list(classes).index(c) if classes is not None else int(c)): float(a)
                        for c, a in accuracy.items()}
        return cls(**{**data, "class_accuracy": accuracy})

    def cells(self, classes: Sequence[str]) -> dict[str, str]:
        """Its figures as table cells, by column label (KID ×10³; class accuracy per class
        name, "–" where it was not computed)."""
        accuracy = self.class_accuracy or {}
        return {"FID": f"{self.fid:.3f}",
                "KID ×10³ ± SD": f"{1e3 * self.kid:.2f} ± {1e3 * self.kid_sd:.2f}",
                "precision": f"{self.precision:.3f}", "recall": f"{self.recall:.3f}",
                "density": f"{self.density:.3f}", "coverage": f"{self.coverage:.3f}",
                **{f"class acc. {name}": f"{accuracy[c]:.3f}" if c in accuracy else "–"
                   for c, name in enumerate(classes)}}


def figure_table(columns: Mapping[str, Quality], classes: Sequence[str]) -> list[str]:
    """A Markdown table with a row per figure and a column per set (e.g. a generator and
    the real-vs-real floor); ``classes`` names the class indices."""
    return cells_table({name: q.cells(classes) for name, q in columns.items()})


def cell_rows(columns: Mapping[str, Mapping[str, str]]) -> list[list[str]]:
    """Cells by column and row label as rows [label, a cell per column]: in the order the
    labels first appear, "–" where a column has no such row."""
    labels = dict.fromkeys(label for cells in columns.values() for label in cells)
    return [[label, *(cells.get(label, "–") for cells in columns.values())] for label in labels]


def cells_table(columns: Mapping[str, Mapping[str, str]]) -> list[str]:
    """A Markdown table of cells by column and row label (``cell_rows``)."""
    return ["| figure | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
            *("| " + " | ".join(row) + " |" for row in cell_rows(columns))]


def quality_from_features(real: Tensor, fake: Tensor, k: int = 5, kid_subsets: int = 50,
                          readability: dict[int, float] | None = None,
                          seed: int | None = None,
                          kid_subset_size: int | None = None) -> Quality:
    """Every distance between features [N, d] (real) and [M, d] (fake); ``readability``
    (``class_accuracy``) is passed through; ``seed`` and ``kid_subset_size`` are KID's
    (``kid_from_features``)."""
    precision, recall = precision_recall(real, fake, k)
    density, coverage = density_coverage(real, fake, k)
    kid_mean, kid_sd = kid_from_features(real, fake, kid_subsets, kid_subset_size, seed)
    return Quality(fid_from_features(real, fake), kid_mean, kid_sd, precision, recall, density,
                   coverage, readability)


def compare(real: Tensor, sets: Mapping[str, tuple[Tensor, Tensor | None]],
            network: nn.Module | None = None, k: int = 5, classifier: nn.Module | None = None,
            kid_subsets: int = 50, seed: int | None = None, batch_size: int = 256,
            kid_subset_size: int | None = None) -> dict[str, Quality]:
    """Every metric of each set against the same real images, whose features are extracted once.

    Args:
        real: the reference images [N, 3, H, W] in [0, 1].
        sets: by name, images [M, 3, H, W] in [0, 1] and their intended classes [M] (or
            ``None``: no class readability).
        network: the feature network; the shipped landscape encoder by default.
        k: nearest neighbours of precision/recall and density/coverage.
        classifier: reads the classes (logits [M, C]); by default the network's own class
            head when it is a landscape encoder.
        kid_subsets: KID's random subsets.
        seed: KID's subsets are drawn with this seed, the same for every set (see
            ``kid_from_features``); ``None`` draws them from torch's global generator.
        batch_size: images per forward pass.
        kid_subset_size: images in each of KID's subsets (see ``kid_from_features``).
    """
    _check_images(real, "real")
    network = _network(network)
    if classifier is None:
        classifier = getattr(network, "classifier", None)
    real_features = extract(network, real, batch_size)
    out = {}
    for name, (images, labels) in sets.items():
        _check_images(images, name)
        readability = (class_accuracy(classifier, images, labels, batch_size)
                       if classifier is not None and labels is not None else None)
        out[name] = quality_from_features(real_features, extract(network, images, batch_size),
                                          k, kid_subsets, readability, seed, kid_subset_size)
    return out


def quality(real: Tensor, fake: Tensor, network: nn.Module | None = None, k: int = 5,
            classifier: nn.Module | None = None, fake_labels: Tensor | None = None,
            kid_subsets: int = 50) -> Quality:
    """Every metric of ``fake`` against ``real`` in ``network``'s feature space.

    ``network`` defaults to the shipped landscape encoder. Class readability is
    computed when the fake images' intended classes (``fake_labels``) are given,
    by ``classifier``, or by the network's own class head when it is a landscape
    encoder.
    """
    return compare(real, {"fake": (fake, fake_labels)}, network, k, classifier,
                   kid_subsets)["fake"]


def floor(real: Tensor, network: nn.Module | None = None, k: int = 5,
          classifier: nn.Module | None = None, labels: Tensor | None = None,
          kid_subsets: int = 50, seed: int = 0) -> Quality:
    """The real-vs-real floor: ``quality`` of one half of ``real`` against the other.

    What a generator that draws exactly the real distribution would score with
    sets of this size (half of ``real`` each). The halves are drawn by a
    permutation seeded with ``seed``, so a set sorted by class (an ImageFolder)
    still splits into two alike halves. Its class readability is the
    classifier's accuracy on the second half's true ``labels``.
    """
    half = len(real) // 2
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    first, second = order[:half], order[half:2 * half]
    return quality(real[first], real[second], network, k, classifier,
                   None if labels is None else labels[second], kid_subsets)
