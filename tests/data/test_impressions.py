"""simulate_clicks: binomial moments, exact edges, reproducible draws, bad counts refused."""

from __future__ import annotations

import math

import pytest
import torch

from pirtune.data.impressions import simulate_clicks
from pirtune.errors import UsageError

N_IMPRESSIONS = 1000
DRAWS = 4000  # per PIR value


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_observed_pir_has_binomial_mean_and_variance(p):
    clicks = simulate_clicks(torch.full((DRAWS,), p), N_IMPRESSIONS,
                             generator=torch.Generator().manual_seed(1))
    observed = clicks.double() / N_IMPRESSIONS
    var = p * (1 - p) / N_IMPRESSIONS
    # 5 standard errors of each sample moment; the variance's SE uses the
    # normal approximation var·sqrt(2/(M-1)), close for n·p(1-p) ≥ 47.
    assert float(observed.mean()) == pytest.approx(p, abs=5 * math.sqrt(var / DRAWS))
    assert float(observed.var()) == pytest.approx(var, abs=5 * var * math.sqrt(2 / (DRAWS - 1)))
    assert float(clicks.double().mean()) == pytest.approx(
        N_IMPRESSIONS * p, abs=5 * math.sqrt(N_IMPRESSIONS * p * (1 - p) / DRAWS))


def test_certain_pirs_are_exact_and_per_image_counts_are_respected():
    pir = torch.tensor([0.0, 1.0, 0.0, 1.0, -1e-7, 1 + 1e-7])
    impressions = torch.tensor([1, 1, 7, 7, 1000, 1000])
    clicks = simulate_clicks(pir, impressions, generator=torch.Generator().manual_seed(0))
    assert clicks.dtype == torch.int64
    torch.testing.assert_close(clicks, torch.tensor([0, 1, 0, 7, 0, 1000]))


def test_same_seed_same_clicks():
    pir = torch.linspace(0, 1, 50)
    a = simulate_clicks(pir, 100, generator=torch.Generator().manual_seed(3))
    b = simulate_clicks(pir, 100, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert bool(((a >= 0) & (a <= 100)).all())


@pytest.mark.parametrize("impressions, match", [
    (0, "impressions=0"),
    (-5, "impressions=-5"),
    (2.5, "impressions=2.5"),
    (torch.tensor([10, 0, 10]), r"impressions\[1\]=0"),
    (torch.tensor([10.0, 2.5, 10.0]), "whole numbers"),
    (torch.tensor([10, 10]), "shape"),
])
def test_bad_impressions_are_refused(impressions, match):
    with pytest.raises(UsageError, match=match):
        simulate_clicks(torch.full((3,), 0.5), impressions)


def test_nan_pir_is_refused():
    with pytest.raises(UsageError, match=r"NaN at indices \[1\]"):
        simulate_clicks(torch.tensor([0.5, float("nan")]))
