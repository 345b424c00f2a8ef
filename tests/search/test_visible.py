"""Steps the eye sees: the JVP speed, the schedule in visible units, the floor, replay."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from pirtune.models.networks import Generator
from pirtune.search import (
    AxisSearch,
    PreferenceSearch,
    Proposal,
    RandomSearch,
    SearchSpace,
    SimulatedPerson,
    Visible,
)
from pirtune.search.visible import PixelMetric


@pytest.fixture
def metric() -> PixelMetric:
    """A small random generator in float64 (finite differences need the precision), with ten
    times the output contrast: its images change by about 10/255 per latent unit (the
    shipped generator's: 10–25), so steps at a JND are small, where images change linearly."""
    torch.manual_seed(0)
    generator = Generator(latent_dim=16, num_classes=2, resolution=16, width=0.125).double()
    with torch.no_grad():
        generator.to_rgb[1].weight *= 10
        generator.to_rgb[1].bias *= 10
    rng = np.random.default_rng(0)
    space = SearchSpace.subspace(rng.standard_normal(16), rng.standard_normal((5, 16)))
    return PixelMetric(generator.eval(), space, image_class=1)


def test_the_jvp_speed_is_the_finite_difference_of_the_image(metric):
    rng = np.random.default_rng(1)
    point = rng.standard_normal(5)
    directions = rng.standard_normal((6, 5))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    h = 1e-5
    finite = [255 * float((metric.images(point + h * d) - metric.images(point - h * d))
                          .abs().mean()) / (2 * h) for d in directions]
    speeds = metric(point, directions)
    np.testing.assert_allclose(speeds, finite, rtol=1e-4)


def _diagonal(weights: np.ndarray):
    """A linear metric: a step t along d changes the 'image' by t·|w ⊙ d|."""
    return lambda point, directions: np.linalg.norm(np.atleast_2d(directions) * weights, axis=1)


@pytest.mark.parametrize("make, floor, unshortened", [
    (lambda start, visible: PreferenceSearch(start, visible=visible), 0.3, 60),
    (lambda start, visible: RandomSearch(start, seed=2, visible=visible), 1.0, 60),
    # In 6 dimensions the boundaries shorten nearly every axis (measured: 56 of 60 rounds).
    (lambda start, visible: AxisSearch(start, seed=2, visible=visible), 0.0, 2),
])
def test_candidates_differ_visibly_by_the_schedule_down_to_the_floor(make, floor,
                                                                      unshortened):
    """Under an anisotropic linear metric every candidate's visible change from the centre
    is max(per_unit·step, floor), whichever coordinates or axes a round asks about (or
    less, for AxisSearch, where a boundary shortens an axis)."""
    weights = np.array([3.0, 2.0, 1.5, 1.0, 1.0, 0.8])   # within MAX_STRETCH of the mean
    visible = Visible.at(_diagonal(weights), np.zeros(6), floor=floor)
    assert visible.per_unit == pytest.approx(np.mean(weights))
    rng = np.random.default_rng(3)
    start, target = rng.standard_normal(6), rng.standard_normal(6)
    search, person = make(start, visible), SimulatedPerson(target)
    at_floor = exact = 0
    for _ in range(60):
        proposal = search.propose()
        shown = np.linalg.norm((proposal.points - proposal.centre) * weights, axis=1)
        step = (search.step_scale * search.uncertainty() if isinstance(search, PreferenceSearch)
                else search.step)
        wanted = visible.visible_step(step)
        assert wanted == max(visible.per_unit * step, floor / np.sqrt(2))
        assert shown.max() <= wanted * (1 + 1e-9)
        exact += bool(np.allclose(shown, wanted, rtol=1e-9))
        at_floor += visible.per_unit * step < floor / np.sqrt(2)
        search.choose(person.pick(proposal.points))
    assert exact >= unshortened, exact
    assert at_floor >= 5 or not floor, at_floor   # the floor was reached, and held


def test_the_schedule_is_the_one_without_a_metric():
    """The metric changes the steps, not what the search asks or believes: an exact person
    gives the same picks, the same posterior and the same schedule with and without it."""
    visible = Visible.at(_diagonal(np.array([3.0, 2.0, 1.5, 1.0, 1.0, 0.8])), np.zeros(6))
    rng = np.random.default_rng(8)
    start, target = rng.standard_normal(6), rng.standard_normal(6)
    searches = [PreferenceSearch(start, visible=visible), PreferenceSearch(start)]
    person = SimulatedPerson(target)
    for _ in range(30):
        picks = [person.pick(search.propose().points) for search in searches]
        assert picks[0] == picks[1]
        for search in searches:
            search.choose(picks[0])
    np.testing.assert_allclose(searches[0].current, searches[1].current, atol=1e-9)


def test_the_floor_holds_in_the_generators_pixels(metric):
    """Late in a search of a real (small) generator, the two nearest rendered candidates
    still differ by the floor, and each differs from the centre by about floor/√2."""
    floor = 4.0
    visible = Visible.at(metric, np.zeros(5), floor=floor)
    rng = np.random.default_rng(4)
    search = PreferenceSearch(np.zeros(5), prior_sd=1.0, step_scale=0.5, visible=visible)
    person = SimulatedPerson(rng.standard_normal(5))
    for _ in range(40):
        search.choose(person.pick(search.propose().points))
    proposal = search.propose()
    assert visible.per_unit * search.step_scale * search.uncertainty() < floor / 4
    images = 255 * metric.images(np.vstack([proposal.centre, proposal.points]))
    pairs = [float((images[a] - images[b]).abs().mean()) for a in range(1, 5)
             for b in range(a + 1, 5)]
    # Measured: the nearest two 3.96 (they differ in one coordinate, linearly); from the
    # centre 2.4–3.2 for 2.83 (two coordinates' changes add up in pixels only about as
    # vectors at right angles do).
    assert min(pairs) == pytest.approx(floor, rel=0.05)
    from_centre = (images[1:] - images[0]).abs().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(from_centre, floor / np.sqrt(2), rtol=0.2)


def test_a_direction_that_shows_nothing_is_stretched_only_so_far():
    visible = Visible(_diagonal(np.array([1.0, 0.0, 1e-9])), per_unit=1.0, floor=0.5)
    steps = visible.steps(np.zeros(3), np.eye(3), step=0.1)
    wanted = 0.5 / np.sqrt(2)   # the floor between two candidates, from the centre
    np.testing.assert_allclose(steps, [wanted, 4 * wanted, 4 * wanted])


@pytest.mark.parametrize("make", [
    lambda start, visible: PreferenceSearch(start, visible=visible, pick_centre=True),
    lambda start, visible: AxisSearch(start, seed=5, visible=visible),
])
def test_a_replay_from_logged_proposals_never_calls_the_metric(make):
    weights = np.array([3.0, 1.0, 1.0, 0.5, 0.2])
    visible = Visible.at(_diagonal(weights), np.zeros(5), floor=0.1)
    rng = np.random.default_rng(6)
    start, target = rng.standard_normal(5), rng.standard_normal(5)
    search, person = make(start, visible), SimulatedPerson(target, temperature=0.3, seed=6)
    logged, picks = [], []
    for _ in range(30):
        logged.append(search.propose().to_json())
        picks.append(person.pick(search.propose().points))
        search.choose(picks[-1])

    def refuse(point, directions):
        raise AssertionError("the metric was called during a replay")

    replayed = make(start, Visible(refuse, visible.per_unit, visible.floor))
    for proposal, pick in zip(logged, picks, strict=True):
        replayed.resume(Proposal.from_json(proposal))
        replayed.choose(pick)
    np.testing.assert_array_equal(replayed.current, search.current)
    np.testing.assert_array_equal(replayed.picked, search.picked)
    if isinstance(search, AxisSearch):
        assert replayed.step == search.step


def test_the_pick_is_what_the_next_round_varies():
    """pick_centre: the next round's candidates vary the picked point in the two asked
    coordinates only, so the picked image is the one in the middle."""
    rng = np.random.default_rng(7)
    start, target = rng.standard_normal(8), rng.standard_normal(8)
    search, person = PreferenceSearch(start, pick_centre=True), SimulatedPerson(target)
    for _ in range(20):
        proposal = search.propose()
        pick = person.pick(proposal.points)
        search.choose(pick)
        np.testing.assert_array_equal(search.picked, proposal.points[pick])
        following = search.propose()
        asked = np.flatnonzero(following.points[0] != following.centre)
        assert len(asked) == 2
        others = np.setdiff1d(np.arange(8), asked)
        np.testing.assert_array_equal(following.centre[others], proposal.points[pick][others])


def test_speeds_from_many_threads_at_once(metric):
    """Web-app sessions ask for speeds from several threads; forward-mode AD's level is
    per process (without a lock: "no level exists")."""
    rng = np.random.default_rng(9)
    points = rng.standard_normal((64, 5))
    alone = [metric(point, np.eye(5)) for point in points]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda point: metric(point, np.eye(5)), points))
    np.testing.assert_array_equal(np.stack(together), np.stack(alone))
