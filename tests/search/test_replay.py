"""Sessions replay identically anywhere: logged proposals, not recomputed trajectories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pirtune.errors import UsageError
from pirtune.search import (
    AxisSearch,
    PreferenceSearch,
    Proposal,
    RandomSearch,
    SimulatedPerson,
)

SEARCHES = {
    "axis": lambda start: AxisSearch(start, seed=7),
    "random": lambda start: RandomSearch(start, seed=7),
    "preference": lambda start: PreferenceSearch(start),
}


def _logged_session(name: str, rounds: int = 25) -> tuple[list[dict], list[int]]:
    """A noisy person's session: every proposal as JSON (the open one last) and the picks."""
    rng = np.random.default_rng(3)
    start, target = rng.standard_normal(8), rng.standard_normal(8)
    search, person = SEARCHES[name](start), SimulatedPerson(target, temperature=0.2, seed=3)
    logged, picks = [], []
    for _ in range(rounds):
        proposal = search.propose()
        logged.append(json.loads(json.dumps(proposal.to_json())))  # through text, as stored
        picks.append(person.pick(proposal.points))
        search.choose(picks[-1])
    logged.append(json.loads(json.dumps(search.propose().to_json())))
    return logged, picks


def _replay(name: str, logged: list[dict], picks: list[int], perturb: bool = False):
    rng = np.random.default_rng(3)
    search = SEARCHES[name](rng.standard_normal(8))
    if perturb:  # a machine whose rounding differs by one ulp
        search.current = np.nextafter(search.current, np.inf)
    for proposal, pick in zip(logged, picks, strict=False):
        search.resume(Proposal.from_json(proposal))
        search.choose(pick)
    search.resume(Proposal.from_json(logged[-1]))
    return search


@pytest.mark.parametrize("name", list(SEARCHES))
def test_a_replayed_session_shows_exactly_the_logged_candidates(name):
    logged, picks = _logged_session(name)
    for proposal in logged:
        assert Proposal.from_json(proposal).to_json() == proposal  # exact round trip
    search = _replay(name, logged, picks, perturb=True)
    assert search.rounds == len(picks)
    assert search.propose().to_json() == logged[-1]
    if name != "preference":  # the axis searches' open round is centred on the current point
        np.testing.assert_array_equal(search.current, logged[-1]["centre"])


def test_axis_search_draws_the_same_axes_after_a_replay():
    """Round r's axes come from (seed, r): a replayed search continues like the original."""
    logged, picks = _logged_session("axis")
    original = AxisSearch(np.random.default_rng(3).standard_normal(8), seed=7)
    for pick in picks:
        original.propose()
        original.choose(pick)
    replayed = _replay("axis", logged, picks)
    replayed.choose(1)
    original.propose()
    original.choose(1)
    np.testing.assert_allclose(replayed.propose().axes, original.propose().axes, atol=1e-9)


def test_resume_refuses_a_proposal_out_of_order():
    logged, _ = _logged_session("axis", rounds=3)
    search = AxisSearch(np.zeros(8), seed=7)
    with pytest.raises(UsageError, match="replay a session's rounds in order"):
        search.resume(Proposal.from_json(logged[2]))
    with pytest.raises(UsageError, match="replay"):
        AxisSearch(np.zeros(5), seed=7).resume(Proposal.from_json(logged[0]))


REPLAY_SCRIPT = """
import json, sys
import numpy as np
from pirtune.search import AxisSearch, Proposal
logged, picks = json.load(sys.stdin)
search = AxisSearch(np.random.default_rng(3).standard_normal(8), seed=7)
for proposal, pick in zip(logged, picks):
    search.resume(Proposal.from_json(proposal))
    search.choose(pick)
search.resume(Proposal.from_json(logged[-1]))
print(json.dumps(search.propose().to_json()))
"""


def _coretypes() -> list[str]:
    """OpenBLAS kernels this CPU can run (forcing a newer one would crash it)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    return [name for name, flag in (("Sandybridge", "avx"), ("Haswell", "avx2"),
                                    ("SkylakeX", "avx512f")) if flag in flags]


def test_a_session_replays_identically_under_other_blas_kernels():
    coretypes = _coretypes()[-2:]  # the two newest this CPU runs
    if len(coretypes) < 2:
        pytest.skip("this CPU runs fewer than two OpenBLAS kernels")
    logged, picks = _logged_session("axis")
    shown = []
    for coretype in coretypes:
        env = {**os.environ, "OPENBLAS_CORETYPE": coretype, "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, "-c", REPLAY_SCRIPT], env=env, check=True,
                                input=json.dumps([logged, picks]), capture_output=True,
                                text=True)
        shown.append(json.loads(result.stdout))
    assert all(candidates == logged[-1] for candidates in shown)
