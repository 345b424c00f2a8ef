"""How far to trust a choice model's pick probabilities: a temperature, and its calibration.

A choice model trained to convergence on a few hundred noisy picks is
overconfident: its utilities u spread far wider than the people's own
preferences do, so softmax(u) over a round's four candidates says 0.9 where
people pick that image a third of the time. The remedy is temperature
scaling (Guo et al. 2017): one factor s, fitted on held-out rounds by
maximising the Plackett–Luce likelihood of softmax(s·u), leaves the ranking
alone and makes the probabilities honest.

Calibration is reported the usual way, on pick probabilities rather than on
top-label confidences: every candidate of every held-out round is one
(predicted probability, picked or not) pair; the pairs are binned by their
predicted probability (equal widths) and the expected calibration error is

    ECE = Σ_b (n_b / N) · |mean predicted_b − share picked_b|.

The reported figures are cross-fitted: the held-out sessions are split into
``folds`` groups by person, each group's probabilities use the factor fitted on
the others, so no round is scored by a temperature fitted on itself. The factor
the model keeps is fitted on every held-out round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from pirtune.errors import UsageError

LOG_SCALE_BOUNDS = (-7.0, 3.0)   # s from about 1e-3 to 20: wider than any fit seen
BINS = 10


def fit_scale(utilities: torch.Tensor, picked: torch.Tensor) -> float:
    """The factor s minimising the Plackett–Luce NLL of softmax(s·u) on these rounds.

    Args:
        utilities: [R, K] the rounds' candidates' utilities.
        picked: [R] the picked candidate's index.

    Returns:
        s > 0 (1.0 when there are no rounds).
    """
    if len(picked) == 0:
        return 1.0
    u = utilities.double()

    def nll(log_scale: float) -> float:
        return float(F.cross_entropy(u * math.exp(log_scale), picked))

    found = minimize_scalar(nll, bounds=LOG_SCALE_BOUNDS, method="bounded",
                            options={"xatol": 1e-6})
    return math.exp(float(found.x))


def pick_probabilities(utilities: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Each candidate's predicted pick probability, softmax(s·u) over its round: [R, K]."""
    return torch.softmax(utilities.double() * scale, dim=1)


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of predicted pick probabilities: [lower, upper), its pairs and their rates."""

    lower: float
    upper: float
    count: int
    predicted: float
    observed: float


def calibration_bins(probabilities: torch.Tensor, picked: torch.Tensor,
                     bins: int = BINS) -> tuple[list[CalibrationBin], float]:
    """Predicted against observed pick probabilities in ``bins`` equal bins, and the ECE.

    Args:
        probabilities: [R, K] each candidate's predicted pick probability.
        picked: [R] the picked candidate's index.

    Returns:
        (the non-empty bins, the expected calibration error; NaN without rounds).
    """
    p = probabilities.double().flatten().numpy()
    y = F.one_hot(picked, probabilities.shape[1]).double().flatten().numpy()
    if len(p) == 0:
        return [], math.nan
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        predicted, observed = float(p[mask].mean()), float(y[mask].mean())
        table.append(CalibrationBin(float(edges[b]), float(edges[b + 1]), int(mask.sum()),
                                    predicted, observed))
        ece += mask.sum() / len(p) * abs(predicted - observed)
    return table, float(ece)


@dataclass(frozen=True)
class Calibration:
    """A choice model's temperature and how honest its pick probabilities are.

    Attributes:
        scale: the factor s on the utilities, fitted on every held-out round.
        rounds: held-out rounds used.
        folds: the cross-fitting folds (1: too few sessions, fitted and scored in sample).
        ece_raw: ECE of softmax(u), the model as trained.
        ece: cross-fitted ECE of softmax(s·u).
        nll_raw, nll: the matching mean Plackett–Luce NLLs (chance: log 4 = 1.386).
        bins: the cross-fitted calibrated probabilities' bins.
        bins_raw: the bins as trained.
    """

    scale: float
    rounds: int
    folds: int
    ece_raw: float
    ece: float
    nll_raw: float
    nll: float
    bins: list[CalibrationBin] = field(default_factory=list)
    bins_raw: list[CalibrationBin] = field(default_factory=list)


def calibrate(utilities: torch.Tensor, picked: torch.Tensor, sessions: list[str],
              folds: int = 2, seed: int = 0, bins: int = BINS) -> Calibration:
    """Fit the temperature on held-out rounds and report calibration, cross-fitted by person.

    Args:
        utilities: [R, K] the held-out rounds' candidates' utilities (as trained).
        picked: [R] the picks.
        sessions: [R] each round's session: folds never split a person.
        folds: cross-fitting folds; fewer when there are fewer sessions.
        seed: the folds' shuffle.
    """
    if len(picked) == 0:
        raise UsageError("calibrating a choice model needs held-out rounds; keep "
                         "estimator.val_fraction above 0 and at least two sessions")
    names = sorted(set(sessions))
    folds = max(1, min(folds, len(names)))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[i]: rank % folds for rank, i in enumerate(order)}
    labels = torch.tensor([fold_of[s] for s in sessions])
    crossed = torch.empty(utilities.shape, dtype=torch.float64)
    for f in range(folds):
        inside = labels == f
        fitted_on = ~inside if folds > 1 else inside
        crossed[inside] = pick_probabilities(
            utilities[inside], fit_scale(utilities[fitted_on], picked[fitted_on]))
    raw = pick_probabilities(utilities)
    table, ece = calibration_bins(crossed, picked, bins)
    table_raw, ece_raw = calibration_bins(raw, picked, bins)
    nll = float(F.nll_loss(crossed.clamp_min(1e-12).log(), picked))
    nll_raw = float(F.nll_loss(raw.clamp_min(1e-12).log(), picked))
    return Calibration(fit_scale(utilities, picked), len(picked), folds, ece_raw, ece,
                       nll_raw, nll, table, table_raw)
