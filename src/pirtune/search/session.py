"""Running a search against a simulated person, round by round."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pirtune.search.base import FourChoiceSearch
from pirtune.search.people import SimulatedPerson


@dataclass(frozen=True)
class Session:
    """One simulated session.

    Attributes:
        rounds_to_target: answers until the current point first lay within the
            radius of the target, or ``None`` if it never did within the cap.
        distances: distance of the current point to the target before the first
            answer and after each one [rounds + 1].
        path: the current point at the same moments [rounds + 1, k].
        stalled: the session ended because the search stalled (its candidates no
            longer differ) before the cap.
    """

    rounds_to_target: int | None
    distances: np.ndarray
    path: np.ndarray
    stalled: bool = False


def simulate(search: FourChoiceSearch, person: SimulatedPerson, radius: float,
             max_rounds: int = 1000, min_rounds: int = 0) -> Session:
    """Let ``person`` answer ``search`` until the current point is within ``radius``.

    Runs at least ``min_rounds`` answers (to measure distances at fixed rounds)
    and at most ``max_rounds``; stops early when the search stalls.
    """
    path = [search.current.copy()]
    reached = 0 if np.linalg.norm(search.current - person.target) <= radius else None
    stalled = False
    while search.rounds < max_rounds and (reached is None or search.rounds < min_rounds):
        proposal = search.propose()
        if proposal.stalled:
            stalled = True
            break
        search.choose(person.pick(proposal.points))
        path.append(search.current.copy())
        if reached is None and np.linalg.norm(search.current - person.target) <= radius:
            reached = search.rounds
    points = np.stack(path)
    return Session(reached, np.linalg.norm(points - person.target, axis=1), points, stalled)
