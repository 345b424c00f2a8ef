""""These look the same": the feedback type, the searches' rules and the JND person's answer."""

from __future__ import annotations

import numpy as np
import pytest

from pirtune.errors import UsageError
from pirtune.search import (
    SAME,
    AxisSearch,
    Feedback,
    PreferenceSearch,
    SimulatedPerson,
    as_feedback,
    simulate,
)
from pirtune.search.axis import SAME_GROWTH
from pirtune.search.feedback import SAME_CODE
from pirtune.search.preference import SAME_LAPSE


def test_every_encoding_gives_the_answer_back():
    for answer in [*(Feedback.pick(i) for i in range(4)), SAME]:
        assert Feedback.from_db(*answer.to_db()) == answer
        assert Feedback.from_export(answer.to_export()) == answer
        assert as_feedback(answer.to_json()) == answer
    assert SAME.to_db() == (None, 1) and SAME.to_export() == "same" and SAME.to_json() == "same"
    assert SAME.to_code() == SAME_CODE == -1 and Feedback.pick(2).to_code() == 2
    assert as_feedback(np.int64(3)) == Feedback.pick(3) and as_feedback("same").is_same


@pytest.mark.parametrize("bad", [4, -1, True, np.bool_(False), 1.0, "two", "Same", None])
def test_what_is_no_answer_is_refused_by_name(bad):
    with pytest.raises(UsageError, match="pick 0, 1, 2 or 3, or answer 'same'"):
        as_feedback(bad)


@pytest.mark.parametrize("cell", ["", "4", "-1", "0.0", "SAME"])
def test_an_export_cell_that_is_no_answer_is_refused(cell):
    with pytest.raises(UsageError, match="is not an answer"):
        Feedback.from_export(cell)


def test_axis_search_grows_its_step_on_same_and_asks_again():
    rng = np.random.default_rng(0)
    search = AxisSearch(rng.standard_normal(8), seed=0)
    search.choose(search.propose().steps.argmax() % 4)   # a pick first: a cut, a moved point
    search.step /= 8
    before = search.propose()
    current, picked, cuts, path = (search.current.copy(), search.picked.copy(),
                                   len(search.offsets), search.path.copy())
    step = search.step
    np.testing.assert_array_equal(search.choose("same"), current)
    assert search.rounds == 2
    assert search.step == pytest.approx(SAME_GROWTH * step)
    np.testing.assert_array_equal(search.picked, picked)
    np.testing.assert_array_equal(search.path, path)
    assert len(search.offsets) == cuts                 # nothing excluded: no side lost
    after = search.propose()
    assert after.round == before.round + 1
    assert not np.allclose(after.axes, before.axes)    # fresh axes
    for _ in range(10):                                # capped at twice the first step
        search.propose()
        search.choose(SAME)
    assert search.step == search.max_step


def test_preference_search_same_update_is_the_exact_marginal_of_the_two_asked_coordinates():
    """The factorised update against the 2-D posterior on the grid, computed from scratch."""
    rng = np.random.default_rng(1)
    search = PreferenceSearch(rng.standard_normal(5), prior_sd=1.0, error_rate=0.0)
    for _ in range(3):   # a few picks first, so the marginals are no longer the prior
        search.propose()
        search.choose(int(rng.integers(4)))
    proposal = search.propose()
    i, j = int(np.argmin(proposal.axes[1])), int(np.argmax(proposal.axes[1]))
    prior_i, prior_j = search.masses[0, i].copy(), search.masses[0, j].copy()
    others = np.delete(search.masses[0], [i, j], axis=0).copy()
    # The spread of the four distances, from the candidates themselves: move m per coordinate,
    # typical distance √(E² + mᵢ² + mⱼ²), S = 2·(mᵢ|δᵢ| + mⱼ|δⱼ|)/d̄.
    m_i = abs(proposal.points[0, i] - proposal.centre[i])
    m_j = abs(proposal.points[0, j] - proposal.centre[j])
    typical = np.sqrt(search.uncertainty() ** 2 + m_i ** 2 + m_j ** 2)
    d_i = np.abs(search.grid[i] - proposal.centre[i])[:, None]            # [G, 1]
    d_j = np.abs(search.grid[j] - proposal.centre[j])[None, :]            # [1, G]
    spread = 2 * (m_i * d_i + m_j * d_j) / typical
    joint = prior_i[:, None] * prior_j[None, :] * (
        SAME_LAPSE + (1 - SAME_LAPSE) * np.exp(-spread / search.jnd))
    joint /= joint.sum()
    search.choose(SAME)
    np.testing.assert_allclose(search.masses[0, i], joint.sum(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(search.masses[0, j], joint.sum(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(np.delete(search.masses[0], [i, j], axis=0), others)
    # "same" pulls both marginals towards the cut, and the next round asks other coordinates.
    after = search.propose().axes[1]
    assert {int(np.argmin(after)), int(np.argmax(after))}.isdisjoint({i, j})


def test_preference_search_same_narrows_the_asked_coordinates_only():
    search = PreferenceSearch(np.zeros(6))
    spread = search.spread()
    proposal = search.propose()
    asked = sorted({int(np.argmin(proposal.axes[1])), int(np.argmax(proposal.axes[1]))})
    search.choose(SAME)
    after = search.spread()
    assert np.all(after[asked] < spread[asked])
    np.testing.assert_allclose(np.delete(after, asked), np.delete(spread, asked))
    np.testing.assert_array_equal(search.picked, np.zeros(6))   # no pick: the middle stays


def test_a_jnd_person_says_same_only_when_all_four_look_alike():
    alike = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    person = SimulatedPerson(np.array([5.0, 5.0]), jnd=0.2, seed=0)
    assert person.answer(alike) == SAME
    assert person.pick(alike) in range(4)                    # pick always picks
    one_apart = alike.copy()
    one_apart[3] = [3.0, 3.0]
    assert person.answer(one_apart) == Feedback.pick(3)
    assert SimulatedPerson(np.array([5.0, 5.0]), seed=0).answer(alike) == Feedback.pick(3)


class _Recording(SimulatedPerson):
    """A simulated person who keeps their answers."""

    answers: list[Feedback]

    def answer(self, points: np.ndarray) -> Feedback:
        self.__dict__.setdefault("answers", []).append(super().answer(points))
        return self.answers[-1]


@pytest.mark.parametrize(("kind", "jnd"), [(AxisSearch, 0.04), (PreferenceSearch, 0.15)])
def test_searches_reach_a_jnd_person_who_says_same(kind, jnd):
    """A person who cannot see mean absolute differences under ``jnd`` (n = 8; within the
    radius 0.3 points differ by about 0.085): both searches hear "same" and still bring the
    point within the radius, and PreferenceSearch calls itself done soon after."""
    n, sames = 8, 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        start, target = rng.standard_normal(n), rng.standard_normal(n)
        search = kind(start, seed=seed) if kind is AxisSearch else kind(start)
        person = _Recording(target, jnd=jnd, seed=seed)
        session = simulate(search, person, radius=0.3, max_rounds=300,
                           until_done=kind is PreferenceSearch)
        sames += sum(answer.is_same for answer in person.answers)
        assert session.rounds_to_target is not None, seed
        if kind is PreferenceSearch:
            assert session.done is not None and session.done <= 60, seed
    assert sames >= 10
