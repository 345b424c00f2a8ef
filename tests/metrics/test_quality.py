"""The quality metrics against independent numpy/scipy computations and their defining cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from pirtune.data.landscapes import render_batch
from pirtune.errors import UsageError
from pirtune.metrics import (
    class_accuracy,
    density_coverage,
    extract,
    fid,
    kid,
    precision_recall,
    quality,
)

# A feature space with no weights: the 4×4 colour layout (48 numbers per image).
LAYOUT = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten())


@pytest.fixture(scope="module")
def scenes() -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint sets of 120 real 16 px scenes, both classes."""
    labels = [i % 2 for i in range(240)]
    images = render_batch(range(240), labels, 16)
    return images[:120], images[120:]


def _numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def _numpy_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ on the whole sets."""
    d, m = a.shape[1], len(a)
    kernel = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    return float((kaa.sum() - np.trace(kaa) + kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.sum() / m**2)


def _numpy_knn(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    def radii(x):
        return np.array([np.sort(np.linalg.norm(x - p, axis=1))[k] for p in x])
    r_real, r_fake = radii(real), radii(fake)
    d = np.linalg.norm(fake[:, None, :] - real[None, :, :], axis=2)   # [M, N]
    return {"precision": np.mean([(d[i] <= r_real).any() for i in range(len(fake))]),
            "recall": np.mean([(d[:, j] <= r_fake).any() for j in range(len(real))]),
            "density": (d <= r_real[None, :]).sum() / (k * len(fake)),
            "coverage": np.mean([(d[:, j] <= r_real[j]).any() for j in range(len(real))])}


def test_each_metric_matches_an_independent_computation(scenes):
    real, other = scenes
    fake = (other * torch.tensor([1.0, 0.9, 0.7])[:, None, None]).clamp(0, 1)  # warmer
    a, b = extract(LAYOUT, real).numpy(), extract(LAYOUT, fake).numpy()
    assert fid(real, fake, LAYOUT) == pytest.approx(_numpy_fid(a, b), rel=1e-6)
    mean, sd = kid(real, fake, LAYOUT, subsets=1, subset_size=len(real))
    assert mean == pytest.approx(_numpy_kid(a, b), rel=1e-5) and sd == 0
    expected = _numpy_knn(a, b, k=5)
    precision, recall = precision_recall(torch.from_numpy(a), torch.from_numpy(b), k=5)
    density, coverage = density_coverage(torch.from_numpy(a), torch.from_numpy(b), k=5)
    assert (precision, recall, density, coverage) == pytest.approx(
        (expected["precision"], expected["recall"], expected["density"], expected["coverage"]))


def test_identical_sets_score_perfectly(scenes):
    real, _ = scenes
    result = quality(real, real.clone(), LAYOUT)
    assert result.fid == pytest.approx(0, abs=1e-6)
    shifted = quality(real, (real + 0.1).clamp(0, 1), LAYOUT)
    # KID's unbiased estimator leaves out each set's own diagonal, so the very same images
    # score a little below 0 (−2·(mean k(x,x) − mean k(x,y))/m), far below a shifted set.
    features = extract(LAYOUT, real).numpy()
    assert result.kid == pytest.approx(_numpy_kid(features, features), rel=1e-4)
    assert -0.1 * shifted.kid < result.kid <= 0
    assert result.precision == result.recall == result.coverage == 1.0


def test_one_image_repeated_has_no_recall(scenes):
    real, other = scenes
    precision, recall = precision_recall(extract(LAYOUT, real),
                                         extract(LAYOUT, other[:1].repeat(100, 1, 1, 1)))
    assert recall <= 1 / len(real)


def test_stronger_colour_shifts_give_larger_fid(scenes):
    real, other = scenes
    scores = [fid(real, (other + shift * torch.tensor([0.5, -0.2, 0.3])[:, None, None]).clamp(0, 1),
                  LAYOUT) for shift in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert all(b > a for a, b in zip(scores, scores[1:], strict=False)), scores


def test_class_accuracy_reads_each_class():
    images = torch.zeros(6, 3, 8, 8)
    images[:3, 0] = 1.0  # red ones are class 0 to this classifier
    labels = torch.tensor([0, 0, 0, 1, 1, 0])

    class Redness(nn.Module):
        def forward(self, x):
            red = x[:, 0].mean((1, 2))
            return torch.stack([red, 1 - red], 1)

    assert class_accuracy(Redness(), images, labels) == {0: pytest.approx(3 / 4), 1: 1.0}


def test_bad_input_is_refused(scenes):
    real, _ = scenes
    with pytest.raises(UsageError, match="float images"):
        fid((real * 255).to(torch.uint8), real, LAYOUT)
    with pytest.raises(UsageError, match="k=5 nearest neighbours"):
        precision_recall(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(UsageError, match="subset_size=500"):
        kid(real, real, LAYOUT, subset_size=500)
