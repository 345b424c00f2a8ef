"""The interaction log: sessions, idempotent picks, conflicts, durability, export."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pirtune.data.pir_dataset import read_pir_dataset
from pirtune.errors import UsageError
from pirtune.models.networks import Generator
from pirtune.search import PreferenceSearch, SimulatedPerson
from pirtune.webapp import ConflictError, InteractionLog, UnknownSessionError, export_pir_dataset
from pirtune.webapp.store import SCHEMA, Status


def _play(log: InteractionLog, rounds: int, seed: int = 0, dim: int = 8) -> tuple[str, list]:
    """A simulated person answers ``rounds`` rounds; every round is logged."""
    rng = np.random.default_rng(seed)
    start, target = rng.standard_normal(dim), rng.standard_normal(dim)
    session = log.create_session("preference", 1, {"start": start.tolist(), "seed": seed})
    search, person = PreferenceSearch(start), SimulatedPerson(target)
    for r in range(1, rounds + 1):
        proposal = search.propose()
        log.record_shown(session, r, proposal.points, 1)
        pick = person.pick(proposal.points)
        assert log.record_choice(session, r, pick)
        search.choose(pick)
    return session, search


def _replay(log: InteractionLog, session: str) -> PreferenceSearch:
    """Rebuild a session's search from its settings and picks."""
    search = PreferenceSearch(np.array(log.session(session)["settings"]["start"]))
    for pick in log.choices(session):
        search.propose()
        search.choose(pick)
    return search


def test_a_session_survives_closing_the_log_and_replays_exactly(tmp_path):
    log = InteractionLog(tmp_path / "log.db")
    session, search = _play(log, 6)
    log.close()
    reopened = InteractionLog(tmp_path / "log.db")  # as after a killed server
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(reopened.choices(session)) == 6
    np.testing.assert_array_equal(_replay(reopened, session).current, search.current)
    assert reopened.session(session)["algorithm"] == "preference"
    assert len(session) >= 20  # unguessable: 128 random bits


def test_bad_picks_are_refused_and_change_nothing(tmp_path):
    log = InteractionLog(tmp_path / "log.db")
    session, _ = _play(log, 2)
    picks = log.choices(session)
    assert log.record_choice(session, 2, picks[1]) is False       # the same pick again: no-op
    with pytest.raises(ConflictError, match="already answered"):
        log.record_choice(session, 2, (picks[1] + 1) % 4)
    with pytest.raises(ConflictError, match="not the open round"):
        log.record_choice(session, 3, 0)                           # round 3 was never shown
    with pytest.raises(UsageError, match="pick 0, 1, 2 or 3"):
        log.record_choice(session, 3, 4)
    with pytest.raises(UnknownSessionError, match="does not exist"):
        log.record_choice("nope", 1, 0)
    assert log.choices(session) == picks
    # Undo takes back the last pick only; the round can then be answered anew.
    log.record_shown(session, 3, np.zeros((4, 8)), 1)             # round 3 was on show
    assert log.undo(session) == 2 and log.choices(session) == picks[:1]
    assert log.record_choice(session, 2, (picks[1] + 1) % 4)
    # Nothing is deleted: the pick and round 3's images moved to the undone tables.
    assert log.undone(session) == [(2, picks[1])]
    assert {s.round for s in log.shown()} == {1, 2}
    db = sqlite3.connect(log.path)
    assert db.execute("SELECT round, COUNT(*) FROM undone_shown WHERE session_id = ? "
                      "GROUP BY round", (session,)).fetchall() == [(3, 4)]


def test_twenty_concurrent_sessions_keep_separate_histories(tmp_path):
    log = InteractionLog(tmp_path / "log.db")
    results: dict[int, tuple[str, list[int]]] = {}

    def person(seed: int) -> None:
        session, search = _play(log, 5, seed=seed)
        results[seed] = (session, search.current)

    threads = [threading.Thread(target=person, args=(seed,)) for seed in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({session for session, _ in results.values()}) == 20
    for session, current in results.values():
        assert len(log.choices(session)) == 5
        np.testing.assert_array_equal(_replay(log, session).current, current)  # its own picks
    count = sqlite3.connect(tmp_path / "log.db").execute("SELECT COUNT(*) FROM shown").fetchone()
    assert count == (20 * 5 * 4,)


def test_export_writes_impressions_and_picks_as_a_pir_dataset(tmp_path):
    log = InteractionLog(tmp_path / "log.db")
    session, _ = _play(log, 3)
    log.record_shown(session, 4, np.zeros((4, 8)) + np.arange(4)[:, None], 1)  # unanswered
    torch.manual_seed(0)
    generator = Generator(latent_dim=8, num_classes=2, resolution=16, width=0.125)
    abandoned = log.create_session("preference", 1, {"seed": 9})      # left at round 1
    log.record_shown(abandoned, 1, np.ones((4, 8)), 1)
    out = export_pir_dataset(log, tmp_path / "pir_data", generator)
    records = read_pir_dataset(out)
    # Only the three answered rounds count: an open round was never judged.
    assert len(records) == 12 and records.images.shape == (12, 3, 16, 16)
    assert records.impressions.tolist() == [1] * 12
    assert int(records.positives.sum()) == 3                      # one pick per answered round
    assert set(records.classes.tolist()) == {1}
    assert records.meta["source"] == "interactions" and records.meta["sessions"] == 1
    assert records.meta["unanswered_shown"] == 8 and "answered" in records.meta["counted"]
    # The stored latents are the ones shown in answered rounds, in order.
    shown = [s for s in log.shown() if s.round <= 3 and s.session_id == session]
    np.testing.assert_allclose(records.latents.numpy(), [s.latent for s in shown], atol=1e-6)
    with pytest.raises(UsageError, match="8 dimensions but the generator takes 4"):
        export_pir_dataset(log, tmp_path / "other", Generator(latent_dim=4, num_classes=2,
                                                              resolution=16, width=0.125))
    with pytest.raises(UsageError, match="no answered rounds"):
        export_pir_dataset(InteractionLog(tmp_path / "empty.db"), tmp_path / "x", generator)


def test_the_export_command_names_a_missing_log(tmp_path):
    command = Path(sys.executable).parent / "pirtune-export"  # the installed console script
    result = subprocess.run([str(command), "--db", str(tmp_path / "none.db"), "--out",
                             str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_round_is_written_once_and_only_while_it_is_open(tmp_path):
    """The log is the source of truth: a round's images are written once, a stale writer
    (an undo came in between) is refused, and an undo moves the proposals too."""
    log = InteractionLog(tmp_path / "log.db")
    session = log.create_session("preference", 0, {"seed": 0})
    first = log.record_shown(session, 1, np.zeros((4, 8)).tolist(), 0, current=[0.5] * 8,
                             proposal={"round": 1}, version=0)
    again = log.record_shown(session, 1, np.ones((4, 8)).tolist(), 0, current=[9.0] * 8,
                             proposal={"round": 1, "other": True}, version=0)
    assert again == first and first.current == [0.5] * 8 and first.latents[0] == [0.0] * 8
    with pytest.raises(ConflictError, match="round 2 is not the open round"):
        log.record_shown(session, 2, np.ones((4, 8)).tolist(), 0)
    log.record_choice(session, 1, 3)
    log.record_shown(session, 2, np.ones((4, 8)).tolist(), 0, current=[1.0] * 8,
                     proposal={"round": 2}, version=0)
    assert log.status(session) == Status(version=0, answered=1, finished=False)
    assert log.undo(session) == 1
    assert log.status(session) == Status(version=1, answered=0, finished=False)
    with pytest.raises(ConflictError, match="changed"):   # a search built before the undo
        log.record_shown(session, 1, np.ones((4, 8)).tolist(), 0, version=0)
    assert list(log.rounds(session)) == [1]
    db = sqlite3.connect(log.path)
    assert db.execute("SELECT round, proposal FROM undone_proposals").fetchall() == [
        (2, '{"round": 2}')]


def test_a_log_from_before_versions_opens_and_replays(tmp_path):
    """An older log (no version, generator or prior columns, no proposals) gains the columns
    and keeps its rounds."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    older = SCHEMA.replace(",\n    version INTEGER NOT NULL DEFAULT 0,\n    generator TEXT,"
                           "\n    prior TEXT,\n    prior_name TEXT", "")
    assert older != SCHEMA and "prior" not in older
    db.executescript(older)
    db.execute("INSERT INTO sessions VALUES ('s', 0, 'preference', 0, '{}', NULL)")
    db.commit()
    db.close()
    log = InteractionLog(path)
    assert log.status("s") == Status(version=0, answered=0, finished=False)
    assert log.generators() == {"s": None} and log.session("s")["generator"] is None
    assert log.priors() == {"s": None} and log.session("s")["prior"] is None
    log.record_shown("s", 1, np.zeros((4, 8)).tolist(), 0)
    assert log.rounds("s")[1].proposal is None


# The answer tables as logs wrote them before "these look the same" existed.
BEFORE_SAME = """
CREATE TABLE choices (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 3),
    created REAL NOT NULL,
    PRIMARY KEY (session_id, round)
);
CREATE TABLE undone_choices (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    created REAL NOT NULL,
    undone REAL NOT NULL
);
"""
# Opens an old log, rebuilds its tables, and is killed (SIGKILL) before the commit.
KILLED_MID_MIGRATION = """
import os, signal, sys
from pirtune.webapp import store
real = store.InteractionLog._migrate_same
def migrate_and_die(self):
    original = self._db.execute
    def execute(sql, *args):
        if sql == "COMMIT":
            os.kill(os.getpid(), signal.SIGKILL)
        return original(sql, *args)
    self._db = type("Spy", (), {"execute": staticmethod(execute)})()
    real(self)
store.InteractionLog._migrate_same = migrate_and_die
store.InteractionLog(sys.argv[1])
"""


def _log_before_same(path: Path) -> None:
    """A log written before "same": two picks of session 's', one undone pick."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.split("CREATE TABLE IF NOT EXISTS choices")[0] + BEFORE_SAME)
    db.execute("INSERT INTO sessions (id, created, algorithm, class, settings) "
               "VALUES ('s', 0, 'axis', 0, '{}')")
    for r in (1, 2, 3):
        db.executemany("INSERT INTO shown VALUES ('s', ?, ?, '[0.0]', 0, 0)",
                       [(r, slot) for slot in range(4)])
    db.executemany("INSERT INTO choices VALUES ('s', ?, ?, 0)", [(1, 2), (2, 0)])
    db.execute("INSERT INTO undone_choices VALUES ('s', 2, 3, 0, 1)")
    db.commit()
    db.close()


def test_a_log_from_before_same_is_rebuilt_and_keeps_its_picks(tmp_path):
    path = tmp_path / "old.db"
    _log_before_same(path)
    log = InteractionLog(path)
    assert log.choices("s") == [2, 0] and log.undone("s") == [(2, 3)]
    assert log.record_choice("s", 3, "same")
    assert not log.record_choice("s", 3, "same")             # the same answer again: no-op
    with pytest.raises(ConflictError, match="already answered with same"):
        log.record_choice("s", 3, 1)
    assert log.answers("s")[2].is_same and log.choices("s") == [2, 0, "same"]
    assert log.undo("s") == 3 and log.undone("s") == [(2, 3), (3, "same")]
    log.close()
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):               # a pick has a slot, "same" none
        raw.execute("INSERT INTO choices VALUES ('s', 3, NULL, 0, 0)")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO choices VALUES ('s', 3, 1, 0, 1)")
    assert InteractionLog(path).choices("s") == [2, 0]         # opening again changes nothing


def test_a_kill_in_the_middle_of_the_migration_loses_nothing(tmp_path):
    """SIGKILL after the tables were rebuilt but before the commit: the old tables stand,
    and the next open migrates them."""
    path = tmp_path / "old.db"
    _log_before_same(path)
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_MIGRATION, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    raw = sqlite3.connect(path)
    assert [row[1] for row in raw.execute("PRAGMA table_info(choices)")] == [
        "session_id", "round", "slot", "created"]
    assert raw.execute("SELECT round, slot FROM choices ORDER BY round").fetchall() == [
        (1, 2), (2, 0)]
    raw.close()
    log = InteractionLog(path)
    assert log.choices("s") == [2, 0] and log.undone("s") == [(2, 3)]


def test_export_writes_a_same_round_as_same_never_as_a_pick(tmp_path):
    log = InteractionLog(tmp_path / "log.db")
    session, _ = _play(log, 2)
    log.record_shown(session, 3, np.zeros((4, 8)) + np.arange(4)[:, None], 1)
    assert log.record_choice(session, 3, "same")
    torch.manual_seed(0)
    generator = Generator(latent_dim=8, num_classes=2, resolution=16, width=0.125)
    out = export_pir_dataset(log, tmp_path / "pir_data", generator)
    rows = (out / "rounds.csv").read_text().splitlines()
    assert [row.split(",")[-1] for row in rows[1:]][2] == "same"
    records = read_pir_dataset(out)
    assert int(records.impressions.sum()) == 12 and int(records.positives.sum()) == 2
    assert records.meta["same"] == 1 and records.meta["picks"] == 2
