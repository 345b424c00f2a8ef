"""What every four-choice search shares: the proposal, the choice protocol, the radius.

A search lives in the coordinates of a ``SearchSpace`` (``pirtune.search.space``):
``propose()`` returns a ``Proposal`` of four candidate points and ``choose(index)``
takes the person's pick. The protocol is strict, and a misuse raises a
``UsageError`` without touching the state: ``choose`` before ``propose``, an
index outside 0–3, or a second ``choose`` for the same proposal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pirtune.errors import UsageError

CHOICES = 4


def satisfaction_radius(n: int) -> float:
    """R = 0.05·√n: a point this close to the target satisfies the person (paper, 1.3.1)."""
    return 0.05 * math.sqrt(n)


@dataclass(frozen=True)
class Proposal:
    """Four candidates around ``centre``: centre ± step·u and centre ± step·v.

    Attributes:
        centre: the current point [k].
        points: the candidates [4, k], in the order +u, −u, +v, −v.
        axes: the two axes u, v [2, k] (unit vectors, orthogonal).
        steps: each candidate's distance from the centre [4] (shortened where
            a full step would leave the feasible region).
        round: 1 for the first proposal of a session.
    """

    centre: np.ndarray
    points: np.ndarray
    axes: np.ndarray
    steps: np.ndarray
    round: int


def axis_candidates(centre: np.ndarray, u: np.ndarray, v: np.ndarray,
                    steps: np.ndarray) -> np.ndarray:
    """The four candidates [4, k]: centre + steps·(+u, −u, +v, −v)."""
    directions = np.stack([u, -u, v, -v])
    return centre[None, :] + steps[:, None] * directions


class FourChoiceSearch:
    """Base of the searches: the propose/choose protocol and the round count.

    Subclasses implement ``_propose() -> Proposal`` and ``_choose(proposal, index)``,
    and keep their estimate of the person's image in ``current`` (coordinates [k]).
    """

    def __init__(self, start: np.ndarray) -> None:
        start = np.asarray(start, dtype=np.float64)
        if start.ndim != 1 or len(start) < 2:
            raise UsageError(f"the start point must be a vector of at least 2 coordinates, "
                             f"not shape {start.shape}")
        self.dim = len(start)
        self.current = start.copy()
        self.rounds = 0  # answered proposals
        self._pending: Proposal | None = None

    def propose(self) -> Proposal:
        """The next four candidates (the same ones again until ``choose`` answers them)."""
        if self._pending is None:
            self._pending = self._propose()
        return self._pending

    def choose(self, index: int) -> np.ndarray:
        """Take the person's pick (0–3 in the proposal's order); return the new current point."""
        if self._pending is None:
            raise UsageError("choose() needs a proposal: call propose() first (and choose "
                             "once per proposal)")
        if not isinstance(index, (int, np.integer)) or not 0 <= index < CHOICES:
            raise UsageError(f"choice {index!r} is not a candidate; pick 0, 1, 2 or 3")
        proposal, self._pending = self._pending, None
        self._choose(proposal, int(index))
        self.rounds += 1
        return self.current

    def _propose(self) -> Proposal:
        raise NotImplementedError

    def _choose(self, proposal: Proposal, index: int) -> None:
        raise NotImplementedError
