"""Batched store reads: for each pseudonym, its sealed e-mail, or why there is none.

One ``find`` with ``In(...)`` on the primary key per batch (both backends answer it from the key
index), instead of one read per pseudonym.

On the embedded SQLite store a run reads through a connection of its own (``Lookup``): the batch
as one JSON array joined on the primary key (``IN (?, ?, …)`` where SQLite lacks ``json_each``),
only the three columns it needs, as plain tuples, on a connection that cannot write
(``PRAGMA query_only``). ``SQLiteStore.find`` builds a ``sqlite3.Row`` and a seven-field dict per
record, which cost the breach run's main process more than SQLite's own work; the online service's
connections and settings are not touched. Errors surface as ``StoreUnavailable``, like the store's.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..store import In, SQLiteStore, Store, StoreUnavailable
from ..store.sqlite import BUSY_TIMEOUT_SECONDS
from ..vault import ERASED, IDENTITIES, RESTRICTED


@dataclass
class Answers:
    """What the vault holds for a batch; a pseudonym in none of these is unknown to it."""

    sealed: dict[str, str] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)
    restricted: set[str] = field(default_factory=set)


def _answers(rows: Any) -> Answers:
    """``(pseudonym, sealed_email, status)`` rows → ``Answers``."""
    answers = Answers()
    sealed_of, erased, restricted = answers.sealed, answers.erased, answers.restricted
    for pseudonym, sealed, status in rows:
        if status == ERASED or not sealed:
            erased.add(pseudonym)
            continue
        sealed_of[pseudonym] = sealed
        if status == RESTRICTED:
            restricted.add(pseudonym)
    return answers


def look_up(store: Store, pseudonyms: Sequence[str]) -> Answers:
    """Sealed e-mails of the listed pseudonyms the vault still holds; erased ones; restricted ones."""
    if not pseudonyms:
        return Answers()
    return _answers((doc["pseudonym"], doc.get("sealed_email"), doc.get("status"))
                    for doc in store.find(IDENTITIES, {"pseudonym": In(tuple(pseudonyms))}))


class Lookup:
    """``look_up`` for one run (a context manager): a dedicated read connection on SQLite."""

    _JOIN = (f'SELECT i."pseudonym", i."sealed_email", i."status" FROM json_each(?) AS j '
             f'JOIN "{IDENTITIES.name}" AS i ON i."pseudonym" = j.value')

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: sqlite3.Connection | None = None
        self._sql: dict[int, str] = {}
        self._json: bool | None = None

    def __enter__(self) -> Lookup:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __call__(self, pseudonyms: Sequence[str]) -> Answers:
        if not pseudonyms:
            return Answers()
        if type(self._store) is not SQLiteStore:  # exactly the embedded store, not a wrapper around it
            return look_up(self._store, pseudonyms)
        try:
            return _answers(self._read(pseudonyms))
        except sqlite3.Error as exc:
            self.close()  # reopened on the next call, as the store does
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc

    def _read(self, pseudonyms: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
        if self._conn is None:
            self._store.get(IDENTITIES, "")  # the store creates the table (and any new column) if needed
            conn = sqlite3.connect(self._store.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
            self._conn = conn
            if self._json is None:
                self._json = _has_json_each(conn)
        if self._json:  # one JSON parameter joined on the key: about a fifth cheaper than IN (?, ?, …)
            return self._conn.execute(self._JOIN, (json.dumps(list(pseudonyms)),)).fetchall()
        sql = self._sql.get(len(pseudonyms))
        if sql is None:
            marks = ",".join("?" * len(pseudonyms))
            sql = self._sql[len(pseudonyms)] = (
                f'SELECT "pseudonym", "sealed_email", "status" FROM "{IDENTITIES.name}" '
                f'WHERE "pseudonym" IN ({marks})'
            )
        return self._conn.execute(sql, tuple(pseudonyms)).fetchall()


def _has_json_each(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has the JSON functions (built in since 3.38, usually compiled in before)."""
    try:
        conn.execute("SELECT value FROM json_each('[]')").fetchall()
    except sqlite3.OperationalError:
        return False
    return True
