"""The PIR paper's statistics (section 4, A.1–A.2) as pure functions over arrays.

The change a tuned generator makes is judged on two independent sets of true
PIRs, one drawn before tuning and one after: the change in mean PIR, its
effect size (Cohen's d: the change over the pooled standard deviation of the
two sets) and Welch's t-test (unequal variances) at α = 0.001.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

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
