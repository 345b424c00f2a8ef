"""What every four-choice search shares: the proposal, the choice protocol, the radius.

A search lives in the coordinates of a ``SearchSpace`` (``pirtune.search.space``):
``propose()`` returns a ``Proposal`` of four candidate points and ``choose(answer)``
takes the person's answer (``pirtune.search.feedback``): a pick 0–3, or "these
look the same" (``"same"``, ``SAME``). The protocol is strict, and a misuse
raises a ``UsageError`` without touching the state: ``choose`` before
``propose``, an answer that is neither (an index outside 0–3, a boolean), or a
second ``choose`` for the same proposal. A "same" answers the round (it counts
in ``rounds``) but picks nothing: ``picked`` stays, and each search reads it by
its own rule (``_same``).

Sessions replay identically on any machine: ``resume(proposal)`` answers a
proposal as it was logged (``Proposal.to_json``) instead of recomputing it, so
a session rebuilt from its log shows exactly the candidates the person saw,
whatever floating-point kernels the machine uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pirtune.errors import UsageError
from pirtune.search.feedback import CHOICES, Feedback, as_feedback


def satisfaction_radius(n: int) -> float:
    """R = 0.05·√n: a point this close to the target satisfies the person (paper, 1.3.1)."""
    return 0.05 * math.sqrt(n)


def _frozen(array: Any) -> np.ndarray:
    """A read-only float64 copy: a proposal never aliases a search's state."""
    out = np.array(array, dtype=np.float64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Proposal:
    """Four candidates around ``centre``: centre ± step·u and centre ± step·v.

    Its arrays are read-only copies, so changing them cannot change the search.

    Attributes:
        centre: the current point [k].
        points: the candidates [4, k], in the order +u, −u, +v, −v.
        axes: the two axes u, v [2, k] (unit vectors; orthogonal in the
            search's metric, which with a ``Visible`` metric may stretch the
            coordinates: ``PreferenceSearch``'s are then not orthogonal in them).
        steps: each candidate's distance from the centre [4]; the two on one
            axis are always equally far.
        round: 1 for the first proposal of a session.
        stalled: the search can no longer make candidates that differ (every
            step is below its ``min_step``): show a message, not four copies of
            one image; the person can undo or finish.
    """

    centre: np.ndarray
    points: np.ndarray
    axes: np.ndarray
    steps: np.ndarray
    round: int
    stalled: bool = False

    def __post_init__(self) -> None:
        for name in ("centre", "points", "axes", "steps"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_json`` gives back the same numbers bit for bit."""
        return {"centre": self.centre.tolist(), "points": self.points.tolist(),
                "axes": self.axes.tolist(), "steps": self.steps.tolist(),
                "round": self.round, "stalled": self.stalled}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proposal:
        """The proposal ``to_json`` wrote."""
        return cls(np.array(data["centre"]), np.array(data["points"]), np.array(data["axes"]),
                   np.array(data["steps"]), int(data["round"]), bool(data.get("stalled", False)))


def axis_candidates(centre: np.ndarray, u: np.ndarray, v: np.ndarray,
                    steps: np.ndarray) -> np.ndarray:
    """The four candidates [4, k]: centre + steps·(+u, −u, +v, −v)."""
    directions = np.stack([u, -u, v, -v])
    return centre[None, :] + steps[:, None] * directions


class FourChoiceSearch:
    """Base of the searches: the propose/choose protocol, the round count, ``done``.

    Subclasses implement ``_propose() -> Proposal``, ``_choose(proposal, index)``,
    ``_same(proposal)`` (the person said the four look the same) and
    ``uncertainty()``, and keep their estimate of the person's image in ``current``
    (coordinates [k]); ``picked`` is the last pick (the start before any; a
    "same" leaves it), the image a person sees in the middle of the next round.

    Args:
        start: the start point [k].
        radius: the distance that satisfies the person (R = 0.05·√k by default);
            the search is ``done`` once its own estimate of the remaining
            distance is below it.
    """

    def __init__(self, start: np.ndarray, radius: float | None = None) -> None:
        start = np.asarray(start, dtype=np.float64)
        if start.ndim != 1 or len(start) < 2:
            raise UsageError(f"the start point must be a vector of at least 2 coordinates, "
                             f"not shape {start.shape}")
        self.dim = len(start)
        self.radius = satisfaction_radius(self.dim) if radius is None else float(radius)
        if not self.radius > 0:
            raise UsageError(f"radius={radius} must be positive")
        self.current = start.copy()
        self.picked = start.copy()
        self.rounds = 0  # answered proposals
        self._pending: Proposal | None = None

    def propose(self) -> Proposal:
        """The next four candidates (the same ones again until ``choose`` answers them)."""
        if self._pending is None:
            self._pending = self._propose()
        return self._pending

    def resume(self, proposal: Proposal) -> None:
        """Make ``proposal`` (as logged when it was shown) the open one.

        The next ``choose`` answers exactly it, and ``propose()`` returns it, so
        replaying a session from its logged proposals never recomputes them.
        """
        if proposal.round != self.rounds + 1 or proposal.points.shape != (CHOICES, self.dim):
            raise UsageError(f"proposal of round {proposal.round} with points of shape "
                             f"{proposal.points.shape} cannot be the open round "
                             f"{self.rounds + 1} of a {self.dim}-dimensional search; "
                             "replay a session's rounds in order")
        self._pending = proposal

    def choose(self, answer: int | str | Feedback) -> np.ndarray:
        """Take the person's answer: a pick (0–3 in the proposal's order), or ``"same"``
        (``Feedback``); return the new current point."""
        if self._pending is None:
            raise UsageError("choose() needs a proposal: call propose() first (and choose "
                             "once per proposal)")
        feedback = as_feedback(answer)
        proposal, self._pending = self._pending, None
        if feedback.is_same:
            self._same(proposal)
        else:
            self._choose(proposal, feedback.index)
            self.picked = proposal.points[feedback.index].copy()
        self.rounds += 1
        return self.current.copy()

    @property
    def stalled(self) -> bool:
        """The open proposal's candidates no longer differ (see ``Proposal.stalled``)."""
        return self.propose().stalled

    @property
    def done(self) -> bool:
        """The search believes it is within ``radius`` of the target, or it is stalled."""
        return self.stalled or self.uncertainty() <= self.radius

    def uncertainty(self) -> float:
        """The search's own estimate of its distance to the target (never the true one)."""
        raise NotImplementedError

    def _propose(self) -> Proposal:
        raise NotImplementedError

    def _choose(self, proposal: Proposal, index: int) -> None:
        raise NotImplementedError

    def _same(self, proposal: Proposal) -> None:
        raise NotImplementedError
