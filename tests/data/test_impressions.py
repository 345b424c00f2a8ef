"""simulate_clicks: binomial moments, exact edges, golden and independent draws, bad counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

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


def test_a_seed_gives_its_own_golden_draw_whatever_the_global_rng():
    pir = torch.tensor([0.0, 0.05, 0.2, 0.5, 0.5, 0.8, 0.95, 1.0])
    torch.manual_seed(123)  # the global RNG must play no part
    clicks = simulate_clicks(pir, 100, generator=torch.Generator().manual_seed(3))
    # Drawn once with torch 2.14's CPU binomial sampler; a change here changes every dataset.
    assert clicks.tolist() == [0, 3, 23, 45, 49, 84, 96, 100]
    torch.manual_seed(456)
    again = simulate_clicks(pir, 100, generator=torch.Generator().manual_seed(3))
    assert again.tolist() == clicks.tolist()


def test_different_seeds_draw_independent_clicks():
    pir = torch.linspace(0, 1, 50)[1:-1]  # 0 and 1 are certain, whatever the seed
    a = simulate_clicks(pir, 100, generator=torch.Generator().manual_seed(3))
    b = simulate_clicks(pir, 100, generator=torch.Generator().manual_seed(4))
    # Two independent draws agree at an image with probability Σ_k P(k)², 3.8 of these
    # 48 on average (SD about 1.9); the same stream twice would agree at all 48.
    same = stats.binom.pmf(np.arange(101)[:, None], 100, pir.double().numpy()) ** 2
    expected = same.sum(0)
    agree = int((a == b).sum())
    assert agree <= expected.sum() + 5 * math.sqrt((expected * (1 - expected)).sum()), agree
    # Each image's two draws are independent: their differences have twice the variance.
    var = (100 * pir * (1 - pir)).double()
    z = ((a - b).double() / (2 * var).sqrt())
    assert float(z.pow(2).mean()) == pytest.approx(1.0, abs=4 * math.sqrt(2 / len(pir)))


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
