"""The PIR paper's statistics (section 4, A.1–A.2) as pure functions over arrays.

The change a tuned generator makes is judged on two independent sets of true
PIRs, one drawn before tuning and one after: the change in mean PIR, its
effect size (Cohen's d: the change over the pooled standard deviation of the
two sets) and Welch's t-test (unequal variances) at α = 0.001. Across
objectives, A.1 and A.2 regress the change on other figures by ``ols``
(statsmodels), whose t-tests the report shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
import statsmodels.api as sm

ALPHA = 0.001  # section 4: the paper's significance threshold


@dataclass(frozen=True)
class WelchTest:
    """Welch's two-sided t-test of mean(after) − mean(before)."""

    t: float
    df: float
    p: float


@dataclass(frozen=True)
class Change:
    """How the mean of ``after`` differs from that of ``before``.

    Attributes:
        n_before, n_after: sample sizes.
        mean_before, mean_after: sample means.
        sd_before, sd_after: sample standard deviations (ddof 1).
        delta: mean_after − mean_before.
        cohens_d: delta over the pooled SD, sqrt(((n₁−1)s₁² + (n₂−1)s₂²) / (n₁+n₂−2)).
        welch: Welch's t, its Welch–Satterthwaite degrees of freedom and two-sided p.
        alpha: the significance threshold.
        significant: p < alpha.
    """

    n_before: int
    n_after: int
    mean_before: float
    mean_after: float
    sd_before: float
    sd_after: float
    delta: float
    cohens_d: float
    welch: WelchTest
    alpha: float
    significant: bool


def _as_sample(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if len(array) < 2:
        raise ValueError(f"{name} has {len(array)} values; a change needs at least 2 in each set")
    return array


def cohens_d(before, after) -> float:
    """(mean(after) − mean(before)) / pooled SD; NaN when both sets are constant."""
    a, b = _as_sample("before", before), _as_sample("after", after)
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                       / (len(a) + len(b) - 2))
    delta = b.mean() - a.mean()
    return float(delta / pooled) if pooled > 0 else math.nan


def welch_test(before, after) -> WelchTest:
    """Welch's t-test of after vs before (scipy), two-sided."""
    a, b = _as_sample("before", before), _as_sample("after", after)
    result = scipy.stats.ttest_ind(b, a, equal_var=False)
    return WelchTest(t=float(result.statistic), df=float(result.df), p=float(result.pvalue))


def mean_change(before, after, alpha: float = ALPHA) -> Change:
    """Every figure the paper reports for one before/after pair of PIR sets."""
    a, b = _as_sample("before", before), _as_sample("after", after)
    welch = welch_test(a, b)
    return Change(
        n_before=len(a), n_after=len(b),
        mean_before=float(a.mean()), mean_after=float(b.mean()),
        sd_before=float(a.std(ddof=1)), sd_after=float(b.std(ddof=1)),
        delta=float(b.mean() - a.mean()),
        cohens_d=cohens_d(a, b),
        welch=welch,
        alpha=alpha,
        # A NaN p (both sets constant) is not significant.
        significant=bool(welch.p < alpha),
    )


@dataclass(frozen=True)
class Coef:
    """One OLS coefficient with its t-test (two-sided) and 95 % confidence interval.

    Attributes:
        beta, t, p: the estimate, its t statistic and two-sided p.
        se: its standard error.
        low, high: the 95 % confidence interval (statsmodels' ``conf_int``, t-based).
    """

    beta: float
    t: float
    p: float
    se: float = math.nan
    low: float = math.nan
    high: float = math.nan


@dataclass(frozen=True)
class Regression:
    """An OLS fit with intercept: coefficients by predictor name ("intercept" first)."""

    coefficients: dict[str, Coef]
    n: int
    r2: float


class TooLittleData(ValueError):
    """A regression cannot be fitted; the message is the one sentence the report shows."""


def ols(response: Sequence[float], predictors: dict[str, Sequence[float]]) -> Regression:
    """Ordinary least squares of ``response`` on ``predictors`` plus an intercept (statsmodels).

    Points with a non-finite value are left out.

    Raises:
        TooLittleData: fewer points than coefficients + 1 (no residual degrees
            of freedom for the t-tests), or collinear predictors.
    """
    y = np.asarray(response, dtype=np.float64)
    design = np.column_stack([np.ones(len(y)), *(np.asarray(v, np.float64)
                                                 for v in predictors.values())])
    finite = np.isfinite(y) & np.isfinite(design).all(axis=1)
    y, design = y[finite], design[finite]
    names = ["intercept", *predictors]
    if len(y) <= len(names):
        raise TooLittleData(
            f"No regression: fitting {len(names)} coefficients with t-tests needs at least "
            f"{len(names) + 1} points, and there {'is' if len(y) == 1 else 'are'} {len(y)}.")
    if np.linalg.matrix_rank(design) < len(names):
        constant = [name for name, column in zip(predictors, design.T[1:], strict=True)
                    if np.ptp(column) == 0]
        why = (f"{', '.join(constant)} {'is' if len(constant) == 1 else 'are'} the same "
               "at every point" if constant else "the predictors are collinear")
        raise TooLittleData(f"No regression: the design is singular ({why}).")
    # A perfect fit has zero residual variance: t is infinite, which is the truth.
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = sm.OLS(y, design).fit()
        coefficients = {name: Coef(float(b), float(t), float(p), float(se), float(lo), float(hi))
                        for name, b, t, p, se, (lo, hi)
                        in zip(names, fit.params, fit.tvalues, fit.pvalues, fit.bse,
                               fit.conf_int(0.05), strict=True)}
    return Regression(coefficients, n=len(y), r2=float(fit.rsquared))


@dataclass(frozen=True)
class BootstrapChange:
    """mean(after) − mean(before) with a percentile bootstrap confidence interval.

    Attributes:
        delta: the observed change in means.
        low, high: the interval's ends.
        level: its confidence level (0.95).
        resamples: bootstrap resamples drawn.
        mean_before, mean_after: the two sets' means.
    """

    delta: float
    low: float
    high: float
    level: float
    resamples: int
    mean_before: float
    mean_after: float


def bootstrap_change(before, after, resamples: int = 2000, level: float = 0.95,
                     seed: int = 0) -> BootstrapChange:
    """The change in means of two independent sets, with a percentile bootstrap CI.

    Each resample draws both sets again with replacement, each at its own
    size (Efron & Tibshirani 1993, 16.2: the two-sample bootstrap).
    """
    x, y = _as_sample("before", before), _as_sample("after", after)
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples={resamples} must be at least 1 and level={level} in (0, 1)")
    rng = np.random.default_rng(seed)
    deltas = (y[rng.integers(len(y), size=(resamples, len(y)))].mean(1)
              - x[rng.integers(len(x), size=(resamples, len(x)))].mean(1))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return BootstrapChange(float(y.mean() - x.mean()), float(low), float(high), level,
                           resamples, float(x.mean()), float(y.mean()))
