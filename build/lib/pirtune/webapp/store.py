"""The interaction log: every session, every image shown and every pick, in SQLite.

One file, in WAL mode with full synchronisation, so a pick is on disk when
``record_choice`` returns and a killed server loses nothing. A session is
stored as its settings plus its answers; the searches are deterministic given
their settings and picks, so replaying the picks rebuilds any session at the
round where it stopped.

Tables:

* ``sessions``: id (unguessable), creation time, algorithm, class, settings (JSON),
  finish time;
* ``shown``: (session, round, slot 0–3) → latent (JSON), class, time;
* ``choices``: (session, round) → the picked slot, time;
* ``undone_choices`` and ``undone_shown``: what an undo took back (the pick and
  the round shown after it), with the time of the undo: nothing is deleted.

``shown`` and ``choices`` hold each session's live path, which the export
turns into PIR data; the ``undone_*`` tables keep the rest.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pirtune.errors import UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    algorithm TEXT NOT NULL,
    class INTEGER NOT NULL,
    settings TEXT NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS shown (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 3),
    latent TEXT NOT NULL,
    class INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (session_id, round, slot)
);
CREATE TABLE IF NOT EXISTS choices (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 3),
    created REAL NOT NULL,
    PRIMARY KEY (session_id, round)
);
CREATE TABLE IF NOT EXISTS undone_choices (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    created REAL NOT NULL,
    undone REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS undone_shown (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    latent TEXT NOT NULL,
    class INTEGER NOT NULL,
    created REAL NOT NULL,
    undone REAL NOT NULL
);
"""


class UnknownSessionError(UsageError):
    """No session has this id."""

    @classmethod
    def of(cls, session_id: str) -> UnknownSessionError:
        return cls(f"session {session_id!r} does not exist; start a new one")


class ConflictError(UsageError):
    """A round was already answered with another pick (or is not the one shown)."""


@dataclass(frozen=True)
class Shown:
    """One image shown: where, what, and whether it was picked."""

    session_id: str
    round: int
    slot: int
    latent: list[float]
    cls: int
    picked: bool


class InteractionLog:
    """The SQLite interaction log (see the module docstring); safe across threads.

    One connection serves every thread, one statement or transaction at a time
    (a lock), so no reader ever sees another thread's open transaction.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create_session(self, algorithm: str, cls: int, settings: dict[str, Any]) -> str:
        """Store a new session; return its unguessable id."""
        session_id = secrets.token_urlsafe(16)
        with self._transaction() as db:
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, NULL)",
                       (session_id, time.time(), algorithm, int(cls), json.dumps(settings)))
        return session_id

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of a query, on the shared connection (one thread at a time)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _require(self, session_id: str) -> None:
        """Raise UnknownSessionError unless the session exists (without reading its settings)."""
        if not self._read("SELECT 1 FROM sessions WHERE id = ?", (session_id,)):
            raise UnknownSessionError.of(session_id)

    def session(self, session_id: str) -> dict[str, Any]:
        """The session's algorithm, class, settings and finish time."""
        rows = self._read(
            "SELECT algorithm, class, settings, finished FROM sessions WHERE id = ?",
            (session_id,))
        if not rows:
            raise UnknownSessionError.of(session_id)
        row = rows[0]
        return {"algorithm": row[0], "class": row[1], "settings": json.loads(row[2]),
                "finished": row[3]}

    def record_shown(self, session_id: str, round: int, latents: Sequence[Sequence[float]],
                     cls: int) -> None:
        """Store the four images of a round (again: no change)."""
        self._require(session_id)
        if len(latents) != 4:
            raise UsageError(f"a round shows 4 images, not {len(latents)}")
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO shown VALUES (?, ?, ?, ?, ?, ?)",
                [(session_id, round, slot, json.dumps([float(x) for x in latent]), int(cls), now)
                 for slot, latent in enumerate(latents)])

    def record_choice(self, session_id: str, round: int, slot: int) -> bool:
        """Store the pick of ``round``; True if new, False if the same pick was stored already.

        Raises:
            UnknownSessionError: no such session.
            UsageError: slot outside 0–3.
            ConflictError: the round was not shown, the previous round is unanswered,
                or the round was answered with another pick.
        """
        self._require(session_id)
        if not 0 <= slot <= 3:
            raise UsageError(f"choice {slot} is not a candidate; pick 0, 1, 2 or 3")
        with self._transaction() as db:
            answered = db.execute("SELECT slot FROM choices WHERE session_id = ? AND round = ?",
                                  (session_id, round)).fetchone()
            if answered is not None:
                if answered[0] == slot:
                    return False
                raise ConflictError(f"round {round} was already answered with {answered[0]}")
            shown = db.execute("SELECT COUNT(*) FROM shown WHERE session_id = ? AND round = ?",
                               (session_id, round)).fetchone()[0]
            done = db.execute("SELECT COUNT(*) FROM choices WHERE session_id = ?",
                              (session_id,)).fetchone()[0]
            if shown != 4 or round != done + 1:
                raise ConflictError(f"round {round} is not the open round (round {done + 1} is)")
            db.execute("INSERT INTO choices VALUES (?, ?, ?, ?)",
                       (session_id, round, slot, time.time()))
        return True

    def undo(self, session_id: str) -> int | None:
        """Take back the session's last pick; return its round, or None if there was none."""
        self._require(session_id)
        with self._transaction() as db:
            last = db.execute("SELECT MAX(round) FROM choices WHERE session_id = ?",
                              (session_id,)).fetchone()[0]
            if last is None:
                return None
            # Moved, not deleted: the pick, and the next round's candidates (proposed
            # afresh after an undo).
            now = time.time()
            db.execute("INSERT INTO undone_choices SELECT *, ? FROM choices "
                       "WHERE session_id = ? AND round = ?", (now, session_id, last))
            db.execute("DELETE FROM choices WHERE session_id = ? AND round = ?",
                       (session_id, last))
            db.execute("INSERT INTO undone_shown SELECT *, ? FROM shown "
                       "WHERE session_id = ? AND round > ?", (now, session_id, last))
            db.execute("DELETE FROM shown WHERE session_id = ? AND round > ?",
                       (session_id, last))
        return last

    def choices(self, session_id: str) -> list[int]:
        """The session's picks in round order (round 1 first)."""
        self._require(session_id)
        rows = self._read("SELECT slot FROM choices WHERE session_id = ? ORDER BY round",
                          (session_id,))
        return [slot for (slot,) in rows]

    def undone(self, session_id: str) -> list[tuple[int, int]]:
        """The (round, slot) picks an undo took back, oldest first."""
        self._require(session_id)
        return [tuple(row) for row in self._read(
            "SELECT round, slot FROM undone_choices WHERE session_id = ? ORDER BY undone",
            (session_id,))]

    def finish(self, session_id: str) -> None:
        """Mark the session finished (the person is satisfied)."""
        self._require(session_id)
        with self._transaction() as db:
            db.execute("UPDATE sessions SET finished = ? WHERE id = ? AND finished IS NULL",
                       (time.time(), session_id))

    def shown(self) -> list[Shown]:
        """Every image shown in every session, with whether it was picked."""
        rows = self._read(
            "SELECT s.session_id, s.round, s.slot, s.latent, s.class, c.slot "
            "FROM shown s LEFT JOIN choices c ON c.session_id = s.session_id "
            "AND c.round = s.round ORDER BY s.session_id, s.round, s.slot")
        return [Shown(sid, rnd, slot, json.loads(latent), cls, picked == slot)
                for sid, rnd, slot, latent, cls, picked in rows]
