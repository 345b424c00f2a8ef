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
        done: answers after which the search first called itself ``done``
            (``None``: never, within the rounds run).
        slowed: answers after which a search with a ``progressing`` flag
            (``PreferenceSearch``) first expected its next answer to tell it
            little (``None``: never, or no such flag); recorded with ``done``.
    """

    rounds_to_target: int | None
    distances: np.ndarray
    path: np.ndarray
    stalled: bool = False
    done: int | None = None
    slowed: int | None = None


def simulate(search: FourChoiceSearch, person: SimulatedPerson, radius: float,
             max_rounds: int = 1000, min_rounds: int = 0, until_done: bool = False) -> Session:
    """Let ``person`` answer ``search`` until the current point is within ``radius``.

    The person answers with a pick, or "same" where they cannot tell the four
    apart (``SimulatedPerson.answer``); a "same" counts as a round.

    Runs at least ``min_rounds`` answers (to measure distances at fixed rounds),
    and with ``until_done`` until the search first calls itself ``done`` too, at
    most ``max_rounds``; stops early when the search stalls.
    """
    path = [search.current.copy()]
    reached = 0 if np.linalg.norm(search.current - person.target) <= radius else None
    done = 0 if until_done and search.done else None
    slowed = None
    stalled = False
    while search.rounds < max_rounds and (reached is None or search.rounds < min_rounds
                                          or (until_done and done is None)):
        proposal = search.propose()
        if proposal.stalled:
            stalled = True
            if until_done and done is None:
                done = search.rounds   # a stalled search is done (``FourChoiceSearch.done``)
            break
        search.choose(person.answer(proposal.points))
        path.append(search.current.copy())
        if reached is None and np.linalg.norm(search.current - person.target) <= radius:
            reached = search.rounds
        if until_done and done is None and search.done:
            done = search.rounds
        if until_done and slowed is None and not getattr(search, "progressing", True):
            slowed = search.rounds
    points = np.stack(path)
    return Session(reached, np.linalg.norm(points - person.target, axis=1), points, stalled,
                   done, slowed)
