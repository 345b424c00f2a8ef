"""Simulated people: a just-noticeable difference."""

from __future__ import annotations

import numpy as np
import pytest

from pirtune.errors import UsageError
from pirtune.search import SimulatedPerson


def _picks(person: SimulatedPerson, points: np.ndarray, times: int = 2000) -> np.ndarray:
    return np.bincount([person.pick(points) for _ in range(times)], minlength=4) / times


def test_a_person_with_a_jnd_tells_apart_what_differs_by_more():
    """Candidates 1.0 apart on average, a JND of 0.5: always the nearest, as an exact person."""
    points = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    person = SimulatedPerson(np.array([0.4, 0.3]), jnd=0.5, seed=0)
    np.testing.assert_array_equal(_picks(person, points, 200), [1, 0, 0, 0])


def test_candidates_that_look_alike_are_picked_at_random_among_themselves():
    """The nearest (0) and one within the JND of it (1) share the picks; the far ones none."""
    points = np.array([[0.0, 0.0], [0.3, 0.1], [3.0, 3.0], [-3.0, 3.0]])
    person = SimulatedPerson(np.array([-0.2, 0.0]), jnd=0.5, seed=1)
    shares = _picks(person, points)
    assert shares[2] == shares[3] == 0
    assert shares[0] == pytest.approx(0.5, abs=0.05)   # 2000 picks: SD 0.011


def test_four_that_look_alike_are_picked_uniformly():
    points = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    person = SimulatedPerson(np.array([5.0, 5.0]), jnd=0.2, seed=2)
    np.testing.assert_allclose(_picks(person, points), 0.25, atol=0.04)   # SD 0.01
    assert person.looks_the_same(points[0], points[3])
    assert not person.looks_the_same(points[0], np.array([5.0, 5.0]))


def test_the_jnd_is_measured_in_the_persons_features():
    """Features that magnify the points tenfold make the same candidates distinguishable."""
    points = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    target = np.array([-1.0, -1.0])
    person = SimulatedPerson(target, jnd=0.2, seed=3, features=lambda p: 10 * p)
    np.testing.assert_array_equal(_picks(person, points, 200), [1, 0, 0, 0])


def test_a_negative_jnd_is_refused():
    with pytest.raises(UsageError, match="jnd=-1"):
        SimulatedPerson(np.zeros(2), jnd=-1)
