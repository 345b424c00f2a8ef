"""The interaction log: every session, every image shown and every pick, in SQLite.

One file, in WAL mode with full synchronisation, so a pick is on disk when
``record_choice`` returns and a killed server loses nothing. The log is the
single source of truth of a session: a round's images are written once, when
the round is first shown, and the server serves what the log holds; its live
searches are a cache rebuilt from the log.

Tables:

* ``sessions``: id (unguessable), creation time, algorithm, class, settings (JSON),
  finish time, ``version``, counted up by every undo (a cached search of an
  older version is stale), ``generator``, the SHA-256 of the generator
  bundle the session's images came from (NULL in logs written before it was kept),
  and ``prior`` and ``prior_name``, the SHA-256 and file name of the choice model
  whose prior the session's search started from (``pirtune-serve --prior``; NULL
  without one, and in logs written before priors existed);
* ``shown``: (session, round, slot 0–3) → latent (JSON), class, time;
* ``proposals``: (session, round) → the search's proposal (JSON, exact floats) and
  the latent of the image in the middle, so a session replays on any machine
  to exactly the candidates that were shown;
* ``choices``: (session, round) → the answer, time: ``slot`` 0–3 and ``same`` 0
  for a pick, ``slot`` NULL and ``same`` 1 for "these look the same"
  (``pirtune.search.feedback``). Logs from before "same" existed (``slot NOT
  NULL``, no ``same``) are rebuilt to this form when opened, in one
  transaction: a kill mid-way leaves the old tables as they were;
* ``undone_choices``, ``undone_shown`` and ``undone_proposals``: what an undo took
  back (the pick and the round shown after it), with the time of the undo:
  nothing is deleted.

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
from pirtune.search.feedback import Feedback, as_feedback

# The answers' tables, by name: a pick is (slot 0–3, same 0), "these look the same" is
# (NULL, 1) (``Feedback.to_db``); a NULL slot is no index to a reader that predates "same".
ANSWER_TABLES = {
    "choices": """CREATE TABLE IF NOT EXISTS {name} (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER CHECK (slot BETWEEN 0 AND 3),
    created REAL NOT NULL,
    same INTEGER NOT NULL DEFAULT 0 CHECK (same IN (0, 1)),
    PRIMARY KEY (session_id, round),
    CHECK ((slot IS NULL) = (same = 1))
)""",
    "undone_choices": """CREATE TABLE IF NOT EXISTS {name} (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    slot INTEGER,
    created REAL NOT NULL,
    undone REAL NOT NULL,
    same INTEGER NOT NULL DEFAULT 0 CHECK (same IN (0, 1))
)""",
}
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    algorithm TEXT NOT NULL,
    class INTEGER NOT NULL,
    settings TEXT NOT NULL,
    finished REAL,
    version INTEGER NOT NULL DEFAULT 0,
    generator TEXT,
    prior TEXT,
    prior_name TEXT
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
CREATE TABLE IF NOT EXISTS proposals (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    proposal TEXT NOT NULL,
    current TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (session_id, round)
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
CREATE TABLE IF NOT EXISTS undone_proposals (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL,
    proposal TEXT NOT NULL,
    current TEXT NOT NULL,
    created REAL NOT NULL,
    undone REAL NOT NULL
);
""" + "".join(f"{ddl.format(name=name)};\n" for name, ddl in ANSWER_TABLES.items())


class UnknownSessionError(UsageError):
    """No session has this id."""

    @classmethod
    def of(cls, session_id: str) -> UnknownSessionError:
        return cls(f"session {session_id!r} does not exist; start a new one")


class ConflictError(UsageError):
    """A round was already answered with another pick (or is not the one shown)."""


@dataclass(frozen=True)
class Shown:
    """One image shown: where, what, whether it was picked, and whether its round was
    answered "these look the same" (then no image of it is picked)."""

    session_id: str
    round: int
    slot: int
    latent: list[float]
    cls: int
    picked: bool
    same: bool = False   # the round was answered "these look the same"


@dataclass(frozen=True)
class Prior:
    """The choice model a session's search started from (``pirtune-serve --prior``).

    Attributes:
        sha256: the model file's SHA-256 (hex).
        name: the model file's name.
    """

    sha256: str
    name: str | None


@dataclass(frozen=True)
class Status:
    """Where a session stands in the log, read in one query.

    Attributes:
        version: counted up by every undo.
        answered: the rounds answered (the open round is ``answered + 1``).
        finished: the person said they are satisfied.
    """

    version: int
    answered: int
    finished: bool


@dataclass(frozen=True)
class Round:
    """A round as logged when it was first shown.

    Attributes:
        latents: the four candidates' latents [4][n], slots 0–3.
        current: the latent of the image in the middle [n].
        proposal: the search's proposal (``Proposal.to_json``), or None in logs
            written before proposals were kept.
    """

    latents: list[list[float]]
    current: list[float] | None
    proposal: dict[str, Any] | None


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
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(sessions)")]
        if "version" not in columns:   # a log written before undo counted versions
            self._db.execute("ALTER TABLE sessions ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        if "generator" not in columns:   # a log written before sessions named their generator
            self._db.execute("ALTER TABLE sessions ADD COLUMN generator TEXT")
        if "prior" not in columns:   # a log written before sessions could start from a prior
            self._db.execute("ALTER TABLE sessions ADD COLUMN prior TEXT")
            self._db.execute("ALTER TABLE sessions ADD COLUMN prior_name TEXT")
        self._migrate_same()
        self._lock = threading.Lock()

    def _migrate_same(self) -> None:
        """Rebuild a log's answer tables from before "same" (``slot NOT NULL``, no ``same``).

        SQLite cannot loosen a column's constraint in place: each table is
        copied into one of the new form, dropped and replaced, all in one
        ``BEGIN IMMEDIATE`` transaction (a second server opening the log waits,
        then finds it done), so a kill mid-way rolls back to the old tables.
        """
        def columns(table: str) -> list[str]:
            return [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]

        if "same" in columns("choices") and "same" in columns("undone_choices"):
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("choices", "undone_choices"):
                old = columns(table)
                if "same" in old:   # migrated by another process meanwhile
                    continue
                self._db.execute(ANSWER_TABLES[table].format(name=f"{table}_same"))
                listed = ", ".join(old)
                self._db.execute(f"INSERT INTO {table}_same ({listed}, same) "
                                 f"SELECT {listed}, 0 FROM {table}")
                self._db.execute(f"DROP TABLE {table}")
                self._db.execute(f"ALTER TABLE {table}_same RENAME TO {table}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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

    def create_session(self, algorithm: str, cls: int, settings: dict[str, Any],
                       generator: str | None = None, prior: Prior | None = None) -> str:
        """Store a new session; return its unguessable id.

        Args:
            generator: the SHA-256 (hex) of the generator bundle serving the session.
            prior: the choice model the session's search started from, if any.
        """
        session_id = secrets.token_urlsafe(16)
        with self._transaction() as db:
            db.execute("INSERT INTO sessions (id, created, algorithm, class, settings, generator, "
                       "prior, prior_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (session_id, time.time(), algorithm, int(cls), json.dumps(settings),
                        generator, prior and prior.sha256, prior and prior.name))
        return session_id

    def generators(self) -> dict[str, str | None]:
        """Every session's generator checksum (None where the log did not keep one)."""
        return dict(self._read("SELECT id, generator FROM sessions ORDER BY created, id"))

    def priors(self) -> dict[str, Prior | None]:
        """Every session's prior (None for a session that started without one)."""
        return {session_id: Prior(sha256, name) if sha256 is not None else None
                for session_id, sha256, name in self._read(
                    "SELECT id, prior, prior_name FROM sessions ORDER BY created, id")}

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of a query, on the shared connection (one thread at a time)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _require(self, session_id: str) -> None:
        """Raise UnknownSessionError unless the session exists (without reading its settings)."""
        if not self._read("SELECT 1 FROM sessions WHERE id = ?", (session_id,)):
            raise UnknownSessionError.of(session_id)

    def session(self, session_id: str) -> dict[str, Any]:
        """The session's algorithm, class, settings, finish time, generator and prior."""
        rows = self._read(
            "SELECT algorithm, class, settings, finished, generator, prior, prior_name "
            "FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise UnknownSessionError.of(session_id)
        row = rows[0]
        return {"algorithm": row[0], "class": row[1], "settings": json.loads(row[2]),
                "finished": row[3], "generator": row[4],
                "prior": Prior(row[5], row[6]) if row[5] is not None else None}

    def status(self, session_id: str) -> Status:
        """The session's version, answered rounds and whether it is finished."""
        rows = self._read(
            "SELECT version, finished, (SELECT COUNT(*) FROM choices WHERE session_id = id) "
            "FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise UnknownSessionError.of(session_id)
        version, finished, answered = rows[0]
        return Status(version, answered, finished is not None)

    def record_shown(self, session_id: str, round: int, latents: Sequence[Sequence[float]],
                     cls: int, current: Sequence[float] | None = None,
                     proposal: dict[str, Any] | None = None,
                     version: int | None = None) -> Round:
        """Store the round on show, unless it is stored already; return it as stored.

        A round is written once: showing it again changes nothing, and the
        returned ``Round`` is what the log holds, which is what must be served.

        Args:
            latents: the four candidates' latents [4][n].
            current: the latent of the image in the middle [n].
            proposal: the search's proposal (``Proposal.to_json``).
            version: the session version the caller's search was built from;
                a write from a stale search (an undo came in between) is refused.

        Raises:
            ConflictError: ``round`` is not the open round, or ``version`` is stale.
        """
        self._require(session_id)
        if len(latents) != 4:
            raise UsageError(f"a round shows 4 images, not {len(latents)}")
        now = time.time()
        with self._transaction() as db:
            stored, answered = db.execute(
                "SELECT version, (SELECT COUNT(*) FROM choices WHERE session_id = id) "
                "FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if round != answered + 1:
                raise ConflictError(f"round {round} is not the open round "
                                    f"(round {answered + 1} is)")
            if version is not None and version != stored:
                raise ConflictError(f"session {session_id} changed (version {stored}, not "
                                    f"{version}); read it again")
            db.executemany(
                "INSERT OR IGNORE INTO shown VALUES (?, ?, ?, ?, ?, ?)",
                [(session_id, round, slot, json.dumps([float(x) for x in latent]), int(cls), now)
                 for slot, latent in enumerate(latents)])
            if current is not None:
                db.execute("INSERT OR IGNORE INTO proposals VALUES (?, ?, ?, ?, ?)",
                           (session_id, round, json.dumps(proposal),
                            json.dumps([float(x) for x in current]), now))
            return self._round(db, session_id, round)

    @staticmethod
    def _round(db: sqlite3.Connection, session_id: str, round: int) -> Round | None:
        latents = [json.loads(latent) for (latent,) in db.execute(
            "SELECT latent FROM shown WHERE session_id = ? AND round = ? ORDER BY slot",
            (session_id, round))]
        if not latents:
            return None
        row = db.execute("SELECT proposal, current FROM proposals "
                         "WHERE session_id = ? AND round = ?", (session_id, round)).fetchone()
        if row is None:   # logged before proposals were kept
            return Round(latents, None, None)
        return Round(latents, json.loads(row[1]), json.loads(row[0]))

    def rounds(self, session_id: str) -> dict[int, Round]:
        """The session's live path as logged: every round shown, answered or open."""
        self._require(session_id)
        with self._lock:
            found = [r for (r,) in self._db.execute(
                "SELECT DISTINCT round FROM shown WHERE session_id = ? ORDER BY round",
                (session_id,))]
            return {r: self._round(self._db, session_id, r) for r in found}

    def record_choice(self, session_id: str, round: int, answer: int | str | Feedback) -> bool:
        """Store the answer of ``round`` (a pick 0–3, or "same": ``Feedback``); True if new,
        False if the same answer was stored already.

        Raises:
            UnknownSessionError: no such session.
            UsageError: an answer that is none (a slot outside 0–3).
            ConflictError: the round was not shown, the previous round is unanswered,
                or the round was answered otherwise.
        """
        self._require(session_id)
        feedback = as_feedback(answer)
        with self._transaction() as db:
            answered = db.execute("SELECT slot, same FROM choices "
                                  "WHERE session_id = ? AND round = ?",
                                  (session_id, round)).fetchone()
            if answered is not None:
                if Feedback.from_db(*answered) == feedback:
                    return False
                raise ConflictError(f"round {round} was already answered with "
                                    f"{Feedback.from_db(*answered)}")
            shown = db.execute("SELECT COUNT(*) FROM shown WHERE session_id = ? AND round = ?",
                               (session_id, round)).fetchone()[0]
            done = db.execute("SELECT COUNT(*) FROM choices WHERE session_id = ?",
                              (session_id,)).fetchone()[0]
            if shown != 4 or round != done + 1:
                raise ConflictError(f"round {round} is not the open round (round {done + 1} is)")
            slot, same = feedback.to_db()
            db.execute("INSERT INTO choices (session_id, round, slot, same, created) "
                       "VALUES (?, ?, ?, ?, ?)", (session_id, round, slot, same, time.time()))
        return True

    def undo(self, session_id: str) -> int | None:
        """Take back the session's last pick; return its round, or None if there was none.

        The session's version counts up, so every search built before is stale.
        """
        self._require(session_id)
        with self._transaction() as db:
            last = db.execute("SELECT MAX(round) FROM choices WHERE session_id = ?",
                              (session_id,)).fetchone()[0]
            if last is None:
                return None
            # Moved, not deleted: the pick, and the next round (proposed afresh after an undo).
            now = time.time()
            db.execute("INSERT INTO undone_choices (session_id, round, slot, same, created, "
                       "undone) SELECT session_id, round, slot, same, created, ? FROM choices "
                       "WHERE session_id = ? AND round = ?", (now, session_id, last))
            db.execute("DELETE FROM choices WHERE session_id = ? AND round = ?",
                       (session_id, last))
            for table in ("shown", "proposals"):
                db.execute(f"INSERT INTO undone_{table} SELECT *, ? FROM {table} "
                           "WHERE session_id = ? AND round > ?", (now, session_id, last))
                db.execute(f"DELETE FROM {table} WHERE session_id = ? AND round > ?",
                           (session_id, last))
            db.execute("UPDATE sessions SET version = version + 1 WHERE id = ?", (session_id,))
        return last

    def answers(self, session_id: str) -> list[Feedback]:
        """The session's answers in round order (round 1 first)."""
        self._require(session_id)
        rows = self._read("SELECT slot, same FROM choices WHERE session_id = ? ORDER BY round",
                          (session_id,))
        return [Feedback.from_db(slot, same) for slot, same in rows]

    def choices(self, session_id: str) -> list[int | str]:
        """The session's answers in round order as JSON: a pick's slot, or ``"same"``."""
        return [answer.to_json() for answer in self.answers(session_id)]

    def undone(self, session_id: str) -> list[tuple[int, int | str]]:
        """The (round, answer) pairs an undo took back, oldest first; an answer is a slot,
        or ``"same"``."""
        self._require(session_id)
        return [(round_, Feedback.from_db(slot, same).to_json()) for round_, slot, same in
                self._read("SELECT round, slot, same FROM undone_choices WHERE session_id = ? "
                           "ORDER BY undone", (session_id,))]

    def finish(self, session_id: str) -> None:
        """Mark the session finished (the person is satisfied)."""
        self._require(session_id)
        with self._transaction() as db:
            db.execute("UPDATE sessions SET finished = ? WHERE id = ? AND finished IS NULL",
                       (time.time(), session_id))

    def shown(self, answered: bool = False) -> list[Shown]:
        """Every image shown in every session, with whether it was picked.

        Args:
            answered: only the rounds a person answered (not a session's open
                round, which was shown but never judged).
        """
        rows = self._read(
            "SELECT s.session_id, s.round, s.slot, s.latent, s.class, c.slot, c.same "
            "FROM shown s LEFT JOIN choices c ON c.session_id = s.session_id "
            "AND c.round = s.round "
            + ("WHERE c.round IS NOT NULL " if answered else "")
            + "ORDER BY s.session_id, s.round, s.slot")
        return [Shown(sid, rnd, slot, json.loads(latent), cls, picked == slot, bool(same))
                for sid, rnd, slot, latent, cls, picked, same in rows]
