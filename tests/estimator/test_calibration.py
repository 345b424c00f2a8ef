"""The choice model's temperature and calibration against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error

from pirtune.errors import UsageError
from pirtune.estimator.calibration import calibrate, calibration_bins, fit_scale, pick_probabilities


def _rounds(count: int, true_scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Utilities [R, 4] and picks drawn from softmax(true_scale·u): a model whose utilities
    are right up to the factor 1/true_scale."""
    g = torch.Generator().manual_seed(seed)
    utilities = torch.randn(count, 4, generator=g, dtype=torch.float64) * 2.0
    picked = torch.multinomial(torch.softmax(true_scale * utilities, 1), 1, generator=g)[:, 0]
    return utilities, picked


def test_fit_scale_recovers_a_planted_temperature() -> None:
    utilities, picked = _rounds(4000, true_scale=0.3)
    found = fit_scale(utilities, picked)
    assert found == pytest.approx(0.3, rel=0.15)
    # the fitted factor is the NLL's minimum (an independent grid search over numpy's NLL)
    grid = np.linspace(0.05, 1.0, 400)
    u, y = utilities.numpy(), picked.numpy()

    def nll(s: float) -> float:
        z = s * u
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    best = grid[np.argmin([nll(s) for s in grid])]
    assert found == pytest.approx(best, abs=0.005)


def test_bins_and_ece_match_torchmetrics_and_a_hand_count() -> None:
    utilities, picked = _rounds(600, true_scale=1.0, seed=1)
    probabilities = pick_probabilities(utilities, 2.5)       # overconfident on purpose
    table, ece = calibration_bins(probabilities, picked, bins=10)
    target = torch.nn.functional.one_hot(picked, 4).flatten()
    expected = binary_calibration_error(probabilities.flatten().float(), target, n_bins=10,
                                        norm="l1")
    assert ece == pytest.approx(float(expected), abs=1e-5)
    assert sum(b.count for b in table) == 4 * len(picked)
    # one bin recounted by hand
    p = probabilities.flatten().numpy()
    mask = (p > 0.9) & (p <= 1.0)
    top = next(b for b in table if b.lower == pytest.approx(0.9))
    assert top.count == mask.sum()
    assert top.observed == pytest.approx(target.numpy()[mask].mean())


def test_calibration_lowers_the_error_of_an_overconfident_model() -> None:
    utilities, picked = _rounds(2000, true_scale=0.25, seed=2)
    sessions = [f"s{i // 25}" for i in range(len(picked))]
    found = calibrate(utilities, picked, sessions, folds=2)
    assert found.ece_raw > 0.1                      # softmax(u) is 4× too sharp
    assert found.ece < 0.03 < found.ece_raw
    assert found.nll < found.nll_raw
    assert found.scale == pytest.approx(0.25, rel=0.2)
    assert found.folds == 2
    assert sum(b.count for b in found.bins) == 4 * len(picked)


def test_calibration_needs_held_out_rounds() -> None:
    with pytest.raises(UsageError, match="held-out rounds"):
        calibrate(torch.empty(0, 4), torch.empty(0, dtype=torch.long), [])


def test_one_session_is_scored_in_sample() -> None:
    utilities, picked = _rounds(50, true_scale=1.0, seed=3)
    found = calibrate(utilities, picked, ["only"] * 50, folds=2)
    assert found.folds == 1
    assert math.isfinite(found.ece)
