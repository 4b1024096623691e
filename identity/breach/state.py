"""A breach run's resumable progress: a private SQLite file next to the output (``OUT.state``).

It records which run this is (run id, incident, the list's SHA-256, the four-eyes request), how far
the run got (input lines done, bytes of output written, counts), which lines repeat an earlier
pseudonym (computed once, see ``dedupe``) and, per pseudonym, what became of its notice. It never
holds an e-mail address.

Consistency rule: output is flushed to disk *before* a checkpoint commits, and a resumed run
truncates the output back to the checkpoint's byte counts, so nothing is written or sent twice. Notices are marked ``sending`` (committed)
before a message goes out: a run interrupted mid-send finds the mark and reports that message as
*uncertain* instead of sending it again.

The file is created 0600 and reopened only as a private regular file of ours, never through a
symbolic link: SQLite opens by name, so the name is checked with ``O_NOFOLLOW`` before and compared
with the checked file after the connection opens, and its ``-wal``/``-shm`` companions must not be
links either (``private_files``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .private_files import OPEN_FLAGS, UnsafeFile, open_own_file, problem_with, same_file

SENDING, SENT, FAILED, UNCERTAIN = "sending", "sent", "failed", "uncertain"
COMPANIONS = ("-wal", "-shm", "-journal")  # the files SQLite opens next to the database, by name
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS repeats (line INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS notices (pseudonym TEXT PRIMARY KEY, status TEXT NOT NULL, "
    "attempts INTEGER NOT NULL) WITHOUT ROWID",
    # mixed lists: the people already resolved (a hash of the vault pseudonym), one notice each
    "CREATE TABLE IF NOT EXISTS people (person BLOB PRIMARY KEY) WITHOUT ROWID",
)
IDENTITY_FIELDS = ("run_id", "incident", "pseudonyms_sha256", "request_id")


class StateError(Exception):
    """The state file is unusable (not ours, damaged, or for another run)."""


@dataclass
class Progress:
    """How far the run got: every input line up to ``lines_done`` is fully written."""

    lines_done: int = 0
    out_bytes: int = 0
    unresolved_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = False


class RunState:
    """Open with ``create`` (new run), ``load`` (resume) or ``temporary`` (stdout runs)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, delete_on_close: bool = False) -> None:
        self.path = path
        self._conn = conn
        self._delete_on_close = delete_on_close

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """Open the state database; ``path`` was checked by the caller, its companions are checked here."""
        for suffix in COMPANIONS:
            companion = Path(str(path) + suffix)
            try:
                problem = problem_with(os.lstat(companion))
            except FileNotFoundError:
                continue
            if problem:
                raise StateError(f"{companion} {problem}; refusing to open the run state")
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a 'sending' mark must survive a crash
        for statement in _SCHEMA:
            conn.execute(statement)
        return conn

    @classmethod
    def create(cls, path: Path, identity: dict[str, Any]) -> RunState:
        """A new state file (mode 0600); refuses to overwrite one."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, 0o600)
        except FileExistsError as exc:
            raise StateError(f"{path} already exists") from exc
        state = cls(path, cls._checked_connect(path, _closed_after_stat(fd)))
        state._write_meta({**{k: identity.get(k) for k in IDENTITY_FIELDS}, **_progress_meta(Progress())})
        return state

    @classmethod
    def load(cls, path: Path) -> RunState:
        """The state of an earlier run; refuses a link, a file not ours or one open to others."""
        try:
            checked = _closed_after_stat(open_own_file(path, os.O_RDONLY))
        except UnsafeFile as exc:
            raise StateError(str(exc)) from exc
        state = cls(path, cls._checked_connect(path, checked))
        try:
            state.identity  # noqa: B018 - fails on a file that is not a run state
        except (sqlite3.DatabaseError, KeyError) as exc:
            state.close()
            raise StateError(f"{path} is not a breach-run state file") from exc
        return state

    @classmethod
    def _checked_connect(cls, path: Path, checked: os.stat_result) -> sqlite3.Connection:
        """Connect to ``path``, which must still name the file ``checked`` (not a link put in its place)."""
        try:
            conn = cls._connect(path)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path} is not a breach-run state file") from exc
        if not same_file(checked, path):
            conn.close()
            raise StateError(f"{path} was replaced while it was being opened; refusing to use it")
        return conn

    @classmethod
    def temporary(cls, identity: dict[str, Any]) -> RunState:
        """A throw-away state (for runs that write to stdout and cannot resume)."""
        fd, name = tempfile.mkstemp(prefix="breach-", suffix=".state")
        os.close(fd)
        os.unlink(name)
        state = cls.create(Path(name), identity)
        state._delete_on_close = True
        return state

    def close(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._conn.close()
        if self._delete_on_close:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)

    # -- meta ------------------------------------------------------------------------------

    def _write_meta(self, values: dict[str, Any]) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
            [(name, json.dumps(value)) for name, value in values.items()],
        )

    def _meta(self) -> dict[str, Any]:
        return {name: json.loads(value) for name, value in self._conn.execute("SELECT name, value FROM meta")}

    @property
    def identity(self) -> dict[str, Any]:
        meta = self._meta()
        return {name: meta[name] for name in IDENTITY_FIELDS}

    @property
    def progress(self) -> Progress:
        meta = self._meta()
        return Progress(meta["lines_done"], meta["out_bytes"], meta["unresolved_bytes"], meta["counts"],
                        meta["complete"])

    # -- resolution ------------------------------------------------------------------------

    def rewind(self) -> Progress:
        """The last checkpoint, where a resumed run continues."""
        return self.progress

    @property
    def repeats_ready(self) -> bool:
        return bool(self._meta().get("repeats_ready"))

    def add_repeats(self, lines: Iterable[int]) -> None:
        """Record line numbers that repeat an earlier pseudonym (see ``dedupe.find_repeats``)."""
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        self._conn.executemany("INSERT OR IGNORE INTO repeats (line) VALUES (?)", ((n,) for n in lines))

    def mark_repeats_ready(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        self._write_meta({"repeats_ready": True})
        self._conn.execute("COMMIT")

    def repeats_after(self, line: int, limit: int) -> list[int]:
        return [n for (n,) in self._conn.execute(
            "SELECT line FROM repeats WHERE line > ? ORDER BY line LIMIT ?", (line, limit))]

    def first_sighting(self, pseudonym: str) -> bool:
        """Whether this run resolves the person behind ``pseudonym`` for the first time (a mixed list
        may name one person in several sectors). Recorded in the transaction the next checkpoint
        commits, so a resumed run agrees with its output; only a hash of the pseudonym is kept."""
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        person = hashlib.sha256(b"breach-run-person\x00" + pseudonym.encode("ascii")).digest()[:16]
        return self._conn.execute("INSERT OR IGNORE INTO people (person) VALUES (?)", (person,)).rowcount == 1

    def checkpoint(self, progress: Progress) -> None:
        """Commit ``progress`` (after the output it counts was flushed to disk)."""
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        self._write_meta(_progress_meta(progress))
        self._conn.execute("COMMIT")

    # -- notices ---------------------------------------------------------------------------

    def notice(self, pseudonym: str) -> tuple[str, int] | None:
        row = self._conn.execute("SELECT status, attempts FROM notices WHERE pseudonym = ?", (pseudonym,)).fetchone()
        return None if row is None else (row[0], row[1])

    def mark_notice(self, pseudonym: str, status: str, attempts: int) -> None:
        """Record a notice's status durably (committed before this returns)."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")
        self._conn.execute(
            "INSERT OR REPLACE INTO notices (pseudonym, status, attempts) VALUES (?, ?, ?)",
            (pseudonym, status, attempts),
        )

    def notice_counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM notices GROUP BY status").fetchall())


def _closed_after_stat(fd: int) -> os.stat_result:
    """The ``fstat`` of ``fd``, which is closed: a second descriptor of the database would drop
    SQLite's POSIX locks on it when closed later."""
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _progress_meta(progress: Progress) -> dict[str, Any]:
    return {
        "lines_done": progress.lines_done,
        "out_bytes": progress.out_bytes,
        "unresolved_bytes": progress.unresolved_bytes,
        "counts": progress.counts,
        "complete": progress.complete,
    }
