"""PreferenceSearch learns how noisy its person is, and knows when it is done."""

from __future__ import annotations

import numpy as np
import pytest

from pirtune.search import (
    AxisSearch,
    PreferenceSearch,
    SimulatedPerson,
    satisfaction_radius,
    simulate,
)
from pirtune.search.preference import Noise


def _noise_weight(person: dict, n: int = 16, rounds: int = 120, seeds=range(6)) -> float:
    """The posterior weight, after ``rounds`` picks, of hypotheses of a noisy person."""
    noisy = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        start, target = rng.standard_normal(n), rng.standard_normal(n)
        search = PreferenceSearch(start)
        simulate(search, SimulatedPerson(target, seed=seed, **person), 0.0, max_rounds=rounds)
        noisy.append(sum(w for noise, w in search.noise.items()
                         if noise.absolute >= 0.3 or noise.relative >= 0.25 or noise.lapse > 0.1))
    return float(np.mean(noisy))


def test_the_search_learns_its_persons_noise_from_the_picks():
    radius = satisfaction_radius(16)
    prior = sum(w for noise, w in PreferenceSearch(np.zeros(16)).noise.items()
                if noise.absolute >= 0.3 or noise.relative >= 0.25 or noise.lapse > 0.1)
    exact = _noise_weight({})
    blurred = _noise_weight({"probit_sd": 0.5 * radius})
    random = _noise_weight({"random_share": 0.2})
    assert exact < prior < blurred and prior < random, (exact, prior, blurred, random)
    assert blurred > 0.8 and random > 0.8


def test_a_fixed_error_rate_is_one_hypothesis():
    search = PreferenceSearch(np.zeros(8), error_rate=0.15)
    [(noise, weight)] = search.noise.items()
    assert weight == 1.0 and noise == Noise(noise.lapse)
    assert noise.lapse == pytest.approx(0.2)  # right quadrant 1 − ε, each wrong one ε/3


def test_noisy_people_still_arrive_where_a_fixed_error_rate_failed():
    """n = 32, a person whose noise is 0.2 × their distance: the issue measured 0–8 % reached
    with ε fixed at 0.15; learning the noise reaches most targets (measured 93 % of 40)."""
    n, radius = 32, satisfaction_radius(32)
    reached = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        start, target = rng.standard_normal(n), rng.standard_normal(n)
        session = simulate(PreferenceSearch(start),
                           SimulatedPerson(target, seed=seed, probit_relative=0.2), radius,
                           max_rounds=700)
        reached.append(session.rounds_to_target is not None)
    assert np.mean(reached) >= 0.75, reached


def test_done_means_near_the_target_for_an_exact_person():
    for make in (lambda start, seed: PreferenceSearch(start),
                 lambda start, seed: AxisSearch(start, seed=seed)):
        distances = []
        for seed in range(12):
            rng = np.random.default_rng(seed)
            start, target = rng.standard_normal(8), rng.standard_normal(8)
            search, person = make(start, seed), SimulatedPerson(target)
            assert not search.done
            while not search.done and search.rounds < 600:
                search.choose(person.pick(search.propose().points))
            distances.append(np.linalg.norm(search.current - target) / satisfaction_radius(8))
        # Measured: every PreferenceSearch run ended within 0.7 R, AxisSearch within 1.2 R.
        assert np.median(distances) <= 1.0 and np.max(distances) <= 2.0, distances


def _first_done(person: dict, seed: int, rule=None) -> float:
    """The distance (in R) of the estimate when ``done`` (or ``rule``) first held, n = 8."""
    n, radius = 8, satisfaction_radius(8)
    rng = np.random.default_rng(seed)
    start, target = rng.standard_normal(n), rng.standard_normal(n)
    search = PreferenceSearch(start)
    picker = SimulatedPerson(target, seed=seed, **{k: v * radius if k == "probit_sd" else v
                                                  for k, v in person.items()})
    done = (lambda: search.done) if rule is None else (lambda: rule(search))
    while not done() and search.rounds < 400:
        search.choose(picker.pick(search.propose().points))
    return float(np.linalg.norm(search.current - target) / radius)


@pytest.mark.parametrize("person", [{"probit_sd": 0.5}, {"random_share": 0.1}])
def test_done_is_honest_for_noisy_people(person):
    """Issue 26: when ``done`` first holds the estimate is within R (measured on 24 runs
    each: all within R, the farthest at 0.98 R for σ = 0.5·R and 0.49 R for 10 % random
    picks); the rule before (expected distance below R) was farther than R in a third and
    a fifth of them (up to 1.6 R and 7.5 R)."""
    distances = np.array([_first_done(person, seed) for seed in range(12)])
    assert np.mean(distances <= 1) >= 11 / 12, distances
    before = np.array([_first_done(person, seed, lambda s: s.uncertainty() <= s.radius)
                       for seed in range(12)])
    assert np.mean(before <= 1) < np.mean(distances <= 1), before


def test_a_noisy_persons_end_game_is_flagged_as_slow():
    """``progressing`` turns false once a σ = 0.5·R person's answers tell the search little
    (measured, n = 16: from about 0.3 bits near 0.6 R), and an exact person's do not."""
    n, radius = 16, satisfaction_radius(16)
    rng = np.random.default_rng(0)
    start, target = rng.standard_normal(n), rng.standard_normal(n)
    exact, noisy = PreferenceSearch(start), PreferenceSearch(start)
    people = SimulatedPerson(target), SimulatedPerson(target, seed=0, probit_sd=0.5 * radius)
    assert exact.information() == pytest.approx(noisy.information())
    assert exact.information() > 1.0
    for _ in range(150):
        for search, person in zip((exact, noisy), people, strict=True):
            search.choose(person.pick(search.propose().points))
        if exact.uncertainty() > radius:
            assert exact.progressing
    assert not noisy.progressing and noisy.information() < 0.2
