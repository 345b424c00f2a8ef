"""HL-Gauss targets against an independent scipy computation (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from pirtune.errors import UsageError
from pirtune.estimator.targets import hl_gauss_targets


def _scipy_targets(p: float, n: int, bins: int) -> tuple[np.ndarray, float]:
    """Independently: N(p, σ²) with σ the binomial SE (≥ 0.75 bins) over [0, 1] in bins."""
    sigma = max(np.sqrt(p * (1 - p) / n), 0.75 / bins)
    cdf = stats.norm(loc=p, scale=sigma).cdf(np.linspace(0, 1, bins + 1))
    mass = np.diff(cdf)
    return mass / mass.sum(), sigma


@pytest.mark.parametrize(("p", "n"), [(0.5, 4), (0.3, 1000), (0.0, 1000), (0.97, 20),
                                      (0.42, 1)])
def test_hl_gauss_targets_are_the_binned_gaussian_of_the_binomial_se(p, n):
    targets = hl_gauss_targets(torch.tensor([p]), torch.tensor([n]), bins=100)[0].double()
    expected, sigma = _scipy_targets(p, n, 100)
    assert float(targets.sum()) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(targets.numpy(), expected, atol=1e-6)
    centres = (np.arange(100) + 0.5) / 100
    mean = float(targets.numpy() @ centres)
    sd = float(np.sqrt(targets.numpy() @ (centres - mean) ** 2))
    if 4 * sigma < min(p, 1 - p):  # far from the ends: no truncation to speak of
        assert mean == pytest.approx(p, abs=2e-3)
        # Binning a Gaussian adds a bin width²/12 to its variance (Sheppard).
        assert sd == pytest.approx(np.sqrt(sigma ** 2 + (1 / 100) ** 2 / 12), rel=0.03)


def test_few_impressions_give_softer_targets_than_many():
    targets = hl_gauss_targets(torch.tensor([0.5, 0.5]), torch.tensor([3, 1000]), bins=100)
    assert float(targets[0].max()) < 0.1 < float(targets[1].max())
    with pytest.raises(UsageError, match="impressions must be at least 1"):
        hl_gauss_targets(torch.tensor([0.5]), torch.tensor([0]), bins=100)
