"""Simulated people for tests and benchmarks: a hidden target and a way of picking.

A ``SimulatedPerson`` picks, among four candidates, the one nearest their
hidden target — in the search space's coordinates, or in any feature space
(``features`` maps points [4, k] to features [4, f], e.g. images through a
generator and a network). Exactly, or with noise:

* ``temperature`` T > 0: Bradley–Terry (Luce) choice, P(pick i) ∝ exp(−dᵢ / T)
  with dᵢ the candidate's distance to the target;
* ``random_share`` p > 0: with probability p the pick is uniform over the four;
* ``probit_sd`` σ > 0 and/or ``probit_relative`` ρ > 0 (Thurstone): the
  nearest candidate after adding N(0, s²) to each distance, with
  s = σ + ρ·(the distance from the four candidates' centre to the target), so
  a person's judgement can be equally blurred everywhere (σ) or blurred in
  proportion to how far they still are (ρ);
* ``jnd`` > 0: a just-noticeable difference. Two images whose features differ
  by less than it on average (mean absolute difference: for 8-bit pixels
  /255, with ``features`` mapping to 255·pixels) look the same to the person,
  who picks at random among the candidates that look the same as the one
  they would pick. Asked for an ``answer`` (a pick or "same",
  ``pirtune.search.feedback``), they say "these look the same" when all four
  look alike (every pair within the JND), before any other noise; ``pick``
  always picks (at random among the four, then).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pirtune.errors import UsageError
from pirtune.search.feedback import SAME, Feedback


class SimulatedPerson:
    """A person with a hidden target who picks the nearest of four candidates.

    Args:
        target: the target point [k] (in the same coordinates as the candidates).
        temperature: Bradley–Terry temperature (distance units), or 0 for exact picks.
        random_share: the share of picks made uniformly at random.
        seed: seeds the noise.
        features: optional map from points [4, k] to features [4, f] in which
            distances are measured (the target is mapped the same way).
        probit_sd: σ, the absolute SD of the noise on each distance.
        probit_relative: ρ, the noise SD per unit of the centre's distance to the target.
        jnd: the mean absolute feature difference below which two candidates
            look the same (0: every difference is seen).
    """

    def __init__(self, target: np.ndarray, temperature: float = 0.0, random_share: float = 0.0,
                 seed: int = 0,
                 features: Callable[[np.ndarray], np.ndarray] | None = None,
                 probit_sd: float = 0.0, probit_relative: float = 0.0,
                 jnd: float = 0.0) -> None:
        if (temperature < 0 or not 0 <= random_share <= 1 or probit_sd < 0
                or probit_relative < 0 or jnd < 0):
            raise UsageError(f"temperature={temperature}, probit_sd={probit_sd}, "
                             f"probit_relative={probit_relative} and jnd={jnd} must be >= 0 "
                             f"and random_share={random_share} in [0, 1]")
        self.jnd = jnd
        self.probit_sd = probit_sd
        self.probit_relative = probit_relative
        self.target = np.asarray(target, dtype=np.float64)
        self.temperature = temperature
        self.random_share = random_share
        self.features = features
        self.rng = np.random.default_rng(seed)
        self._target_features = (self.target if features is None
                                 else features(self.target[None])[0])

    def distances(self, points: np.ndarray) -> np.ndarray:
        """Each point's distance [4] to the target (in feature space if given)."""
        return np.linalg.norm(self._map(points) - self._target_features, axis=1)

    def looks_the_same(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether points ``a`` and ``b`` [k] differ by less than the person's JND."""
        mapped = self._map(np.stack([a, b]))
        return bool(np.abs(mapped[0] - mapped[1]).mean() < self.jnd)

    def _map(self, points: np.ndarray) -> np.ndarray:
        return points if self.features is None else self.features(points)

    def all_alike(self, points: np.ndarray) -> bool:
        """Whether every two of ``points`` [4, k] differ by less than the person's JND."""
        if not self.jnd:
            return False
        mapped = self._map(points)
        apart = np.abs(mapped[:, None, :] - mapped[None, :, :]).mean(axis=2)   # [4, 4]
        return bool(apart.max() < self.jnd)

    def answer(self, points: np.ndarray) -> Feedback:
        """The person's answer to ``points`` [4, k]: "same" when all four look alike, else
        their ``pick``."""
        if self.all_alike(points):
            return SAME
        return Feedback.pick(self.pick(points))

    def pick(self, points: np.ndarray) -> int:
        """The index of the chosen candidate among ``points`` [4, k]."""
        if self.random_share and self.rng.random() < self.random_share:
            return int(self.rng.integers(len(points)))
        mapped = self._map(points)
        best = self._best(points, np.linalg.norm(mapped - self._target_features, axis=1))
        if not self.jnd:
            return best
        alike = np.flatnonzero(np.abs(mapped - mapped[best]).mean(axis=1) < self.jnd)
        return int(self.rng.choice(alike)) if len(alike) > 1 else best

    def _best(self, points: np.ndarray, distances: np.ndarray) -> int:
        """The candidate the person's judgement of ``distances`` [4] picks."""
        if self.probit_sd or self.probit_relative:
            centre = np.mean(points, axis=0, keepdims=True)
            sd = self.probit_sd + self.probit_relative * self.distances(centre)[0]
            distances = distances + sd * self.rng.standard_normal(len(distances))
        if not self.temperature:
            return int(np.argmin(distances))
        logits = -(distances - distances.min()) / self.temperature
        weights = np.exp(logits)
        return int(self.rng.choice(len(points), p=weights / weights.sum()))
