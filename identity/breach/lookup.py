"""Batched store reads: for each listed identifier, its sealed e-mail, or why there is none.

One ``find`` with ``In(...)`` on the primary key per batch (both backends answer it from the key
index), instead of one read per identifier.

On the embedded SQLite store a run reads through a connection of its own (``Lookup``): the batch
as one JSON array joined on the primary key (``IN (?, ?, …)`` where SQLite lacks ``json_each``),
only the columns it needs, as plain tuples, on a connection that cannot write
(``PRAGMA query_only``). ``SQLiteStore.find`` builds a ``sqlite3.Row`` and a dict per record,
which cost the breach run's main process more than SQLite's own work; the online service's
connections and settings are not touched. Errors surface as ``StoreUnavailable``, like the store's.

Pairwise subjects (``SectorLookup``) take one more batched read: their mapping rows
(``identity.pairwise.mapping``), each opened with its (sector, subject), then the vault read of
the pseudonyms found. No service key is involved.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..pairwise.mapping import ERASED as ROW_ERASED
from ..pairwise.mapping import SECTOR_SUBJECTS, RowBatch
from ..store import Collection, In, SQLiteStore, Store, StoreUnavailable
from ..store.sqlite import BUSY_TIMEOUT_SECONDS
from ..vault import IDENTITIES, IDENTITY_ERASED, IDENTITY_RESTRICTED
from .list_formats import SEPARATOR


@dataclass
class Answers:
    """What the vault holds for a batch; an identifier in none of these is unknown to it.

    ``person`` (pairwise lookups only) names the vault pseudonym behind each identifier found, so
    a list that names one person twice, in two sectors, can be told apart.
    """

    sealed: dict[str, str] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)
    restricted: set[str] = field(default_factory=set)
    person: dict[str, str] = field(default_factory=dict)


def _answers(rows: Any) -> Answers:
    """``(pseudonym, sealed_email, status)`` rows → ``Answers``."""
    answers = Answers()
    sealed_of, erased, restricted = answers.sealed, answers.erased, answers.restricted
    for pseudonym, sealed, status in rows:
        if status == IDENTITY_ERASED or not sealed:
            erased.add(pseudonym)
            continue
        sealed_of[pseudonym] = sealed
        if status == IDENTITY_RESTRICTED:
            restricted.add(pseudonym)
    return answers


def look_up(store: Store, pseudonyms: Sequence[str]) -> Answers:
    """Sealed e-mails of the listed pseudonyms the vault still holds; erased ones; restricted ones."""
    if not pseudonyms:
        return Answers()
    return _answers((doc["pseudonym"], doc.get("sealed_email"), doc.get("status"))
                    for doc in store.find(IDENTITIES, {"pseudonym": In(tuple(pseudonyms))}))


class _Reader:
    """Rows of one collection by primary key, as tuples of ``columns`` (the key first)."""

    def __init__(self, store: Store, coll: Collection, columns: tuple[str, ...]) -> None:
        self._store = store
        self._coll = coll
        self._columns = columns
        self._conn: sqlite3.Connection | None = None
        self._sql: dict[int, str] = {}
        self._json: bool | None = None
        selected = ", ".join(f't."{c}"' for c in columns)
        self._join = f'SELECT {selected} FROM json_each(?) AS j JOIN "{coll.name}" AS t ON t."{coll.key}" = j.value'

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __call__(self, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        if type(self._store) is not SQLiteStore:  # exactly the embedded store, not a wrapper around it
            return [tuple(doc.get(c) for c in self._columns)
                    for doc in self._store.find(self._coll, {self._coll.key: In(tuple(keys))})]
        try:
            return self._read(keys)
        except sqlite3.Error as exc:
            self.close()  # reopened on the next call, as the store does
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc

    def _read(self, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        if self._conn is None:
            self._store.get(self._coll, "")  # the store creates the table (and any new column) if needed
            conn = sqlite3.connect(self._store.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
            self._conn = conn
            if self._json is None:
                self._json = _has_json_each(conn)
        if self._json:  # one JSON parameter joined on the key: about a fifth cheaper than IN (?, ?, …)
            return self._conn.execute(self._join, (json.dumps(list(keys)),)).fetchall()
        sql = self._sql.get(len(keys))
        if sql is None:
            marks = ",".join("?" * len(keys))
            columns = ", ".join(f'"{c}"' for c in self._columns)
            sql = self._sql[len(keys)] = (
                f'SELECT {columns} FROM "{self._coll.name}" WHERE "{self._coll.key}" IN ({marks})')
        return self._conn.execute(sql, tuple(keys)).fetchall()


class Lookup:
    """``look_up`` for one run (a context manager): a dedicated read connection on SQLite."""

    def __init__(self, store: Store) -> None:
        self._identities = _Reader(store, IDENTITIES, ("pseudonym", "sealed_email", "status"))

    def __enter__(self) -> Lookup:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._identities.close()

    def __call__(self, pseudonyms: Sequence[str]) -> Answers:
        if not pseudonyms:
            return Answers()
        return _answers(self._identities(pseudonyms))


class SectorLookup(Lookup):
    """``Lookup`` for pairwise subjects: ``sector`` for a list of one sector's subjects, else identifiers
    ``SECTOR<TAB>SUBJECT`` (an empty sector: a vault pseudonym), as ``list_formats`` reads them.

    A subject of another sector finds no row (its row id and key come from the sector it was given
    with), so it is unknown, like a pseudonym the vault never had.
    """

    def __init__(self, store: Store, *, sector: str | None = None) -> None:
        super().__init__(store)
        self._sector = sector
        self._rows = _Reader(store, SECTOR_SUBJECTS, ("row", "sealed"))

    def close(self) -> None:
        super().close()
        self._rows.close()

    def _split(self, key: str) -> tuple[str, str]:
        if self._sector is not None:
            return self._sector, key
        sector, _, subject = key.partition(SEPARATOR)
        return sector, subject

    def __call__(self, keys: Sequence[str]) -> Answers:
        if not keys:
            return Answers()
        person: dict[str, str] = {}  # identifier → vault pseudonym
        erased: set[str] = set()
        batch = RowBatch()
        for key in keys:
            sector, subject = self._split(key)
            if sector:
                batch.add(key, sector, subject)
            else:
                person[key] = subject
        ids = batch.ids
        for key, pseudonym in batch.opened(self._rows(ids) if ids else ()):
            if pseudonym == ROW_ERASED:
                erased.add(key)
            elif pseudonym is not None:  # a row that does not open (altered in the store) counts as unknown
                person[key] = pseudonym
        vault = super().__call__(list(set(person.values())))
        answers = Answers(erased=erased)
        for key, pseudonym in person.items():
            if pseudonym in vault.sealed:
                answers.sealed[key] = vault.sealed[pseudonym]
                answers.person[key] = pseudonym
                if pseudonym in vault.restricted:
                    answers.restricted.add(key)
            elif pseudonym in vault.erased:
                answers.erased.add(key)
        return answers


def _has_json_each(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has the JSON functions (built in since 3.38, usually compiled in before)."""
    try:
        conn.execute("SELECT value FROM json_each('[]')").fetchall()
    except sqlite3.OperationalError:
        return False
    return True
