"""The paper's statistics against independent computations on fixed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from pirtune.stats import (
    ALPHA,
    TooLittleData,
    bootstrap_change,
    cohens_d,
    mean_change,
    ols,
    welch_test,
)

BEFORE = np.array([0.61, 0.55, 0.70, 0.64, 0.58, 0.49, 0.66, 0.72, 0.60, 0.57])
AFTER = np.array([0.71, 0.80, 0.66, 0.77, 0.85, 0.74, 0.69, 0.90, 0.79, 0.75, 0.83, 0.70])


def _hand_welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Welch's t (b − a), Welch–Satterthwaite df and two-sided p, written out."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (b.mean() - a.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    p = 2 * scipy.stats.t.sf(abs(t), df)
    return t, df, p


def test_welch_matches_the_formula_and_statsmodels():
    from statsmodels.stats.weightstats import ttest_ind

    t, df, p = _hand_welch(BEFORE, AFTER)
    result = welch_test(BEFORE, AFTER)
    assert result.t == pytest.approx(t, rel=1e-12)
    assert result.df == pytest.approx(df, rel=1e-12)
    assert result.p == pytest.approx(p, rel=1e-9)
    sm_t, sm_p, sm_df = ttest_ind(AFTER, BEFORE, usevar="unequal")
    assert (result.t, result.p, result.df) == pytest.approx((sm_t, sm_p, sm_df), rel=1e-9)


def test_cohens_d_uses_the_pooled_sd():
    n1, n2 = len(BEFORE), len(AFTER)
    pooled = math.sqrt(((n1 - 1) * np.var(BEFORE, ddof=1) + (n2 - 1) * np.var(AFTER, ddof=1))
                       / (n1 + n2 - 2))
    assert cohens_d(BEFORE, AFTER) == pytest.approx((AFTER.mean() - BEFORE.mean()) / pooled)
    assert cohens_d(AFTER, BEFORE) == pytest.approx(-cohens_d(BEFORE, AFTER))
    assert math.isnan(cohens_d([0.5, 0.5], [0.5, 0.5]))


def test_mean_change_reports_every_figure_and_the_threshold():
    change = mean_change(BEFORE, AFTER)
    assert change.delta == pytest.approx(AFTER.mean() - BEFORE.mean())
    assert (change.n_before, change.n_after) == (10, 12)
    assert change.sd_after == pytest.approx(AFTER.std(ddof=1))
    assert change.alpha == ALPHA == 0.001
    assert change.significant == (change.welch.p < 0.001)
    assert change.significant  # p ≈ 3e-5 for these arrays
    assert not mean_change(BEFORE, AFTER, alpha=change.welch.p / 2).significant
    # Unequal variances: Welch's df lies between min(n) − 1 and n₁ + n₂ − 2.
    assert min(len(BEFORE), len(AFTER)) - 1 < change.welch.df < len(BEFORE) + len(AFTER) - 2


def test_too_few_values_are_refused():
    with pytest.raises(ValueError, match="before has 1 values"):
        mean_change([0.5], [0.5, 0.6])


def test_ols_says_why_it_cannot_fit():
    with pytest.raises(TooLittleData, match="zero_share is the same at every point"):
        ols([0.1, 0.2, 0.3, 0.5, 0.4, 0.6],
            {"initial_sd": [1, 2, 3, 4, 5, 7], "zero_share": [0.2] * 6})
    with pytest.raises(TooLittleData, match="at least 3 points, and there are 2"):
        # The NaN point is left out.
        ols([0.1, 0.2, float("nan")], {"predicted_delta": [0.1, 0.3, 0.2]})


def test_bootstrap_change_matches_the_normal_interval_on_large_samples():
    rng = np.random.default_rng(5)
    before, after = rng.normal(0.3, 0.1, 4000), rng.normal(0.32, 0.2, 3000)
    found = bootstrap_change(before, after, resamples=4000, seed=1)
    se = np.sqrt(before.var(ddof=1) / len(before) + after.var(ddof=1) / len(after))
    delta = after.mean() - before.mean()
    assert found.delta == pytest.approx(delta, rel=1e-12)
    assert found.low == pytest.approx(delta - 1.959964 * se, abs=0.1 * se)
    assert found.high == pytest.approx(delta + 1.959964 * se, abs=0.1 * se)
    assert (found.mean_before, found.mean_after) == pytest.approx((before.mean(), after.mean()))


def test_ols_intervals_match_statsmodels():
    import statsmodels.api as sm

    x = np.array([0.1, 0.4, 0.2, 0.9, 0.5, 0.7, 0.3])
    y = 2 * x + np.array([0.05, -0.02, 0.01, 0.03, -0.04, 0.02, -0.01])
    fit = ols(y, {"x": x})
    reference = sm.OLS(y, sm.add_constant(x)).fit()
    slope = fit.coefficients["x"]
    assert slope.se == pytest.approx(reference.bse[1])
    assert (slope.low, slope.high) == pytest.approx(tuple(reference.conf_int(0.05)[1]))
    assert slope.low < 2 < slope.high
