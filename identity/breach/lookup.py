"""Batched store reads: for each listed identifier, its sealed e-mail, or why there is none.

One bulk read per batch (``Store.find_fields`` with ``In(...)`` on the primary key: both backends
answer it from the key index), of only the columns the run needs, as plain tuples: no document is
built per record, which would cost the breach run's main process more than the database's own work.
The same code path on every backend; errors surface as the store's (``StoreUnavailable``).

Pairwise subjects (``SectorLookup``) take one more batched read: their mapping rows
(``identity.pairwise.mapping``), each opened with its (sector, subject), then the vault read of
the pseudonyms found. No service key is involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..pairwise.mapping import ERASED as ROW_ERASED
from ..pairwise.mapping import SECTOR_SUBJECTS, RowBatch
from ..store import Collection, In, Store
from ..vault import IDENTITIES, IDENTITY_ERASED, IDENTITY_RESTRICTED
from .list_formats import SEPARATOR

IDENTITY_COLUMNS = ("pseudonym", "sealed_email", "status")
ROW_COLUMNS = ("row", "sealed")


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


def _answers(rows: Iterable[tuple[Any, ...]]) -> Answers:
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


def _by_key(store: Store, coll: Collection, columns: tuple[str, ...], keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """The rows of ``coll`` whose primary key is listed, as tuples of ``columns``."""
    return [row for batch in store.find_fields(coll, {coll.key: In(tuple(keys))}, columns) for row in batch]


def look_up(store: Store, pseudonyms: Sequence[str]) -> Answers:
    """Sealed e-mails of the listed pseudonyms the vault still holds; erased ones; restricted ones."""
    if not pseudonyms:
        return Answers()
    return _answers(_by_key(store, IDENTITIES, IDENTITY_COLUMNS, pseudonyms))


class Lookup:
    """``look_up`` bound to a store for one run (a context manager, as ``resolve`` scopes it)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> Lookup:
        return self

    def __exit__(self, *_: Any) -> None:
        """Nothing of its own to release: the store holds the connections."""

    def __call__(self, pseudonyms: Sequence[str]) -> Answers:
        return look_up(self._store, pseudonyms)


class SectorLookup(Lookup):
    """``Lookup`` for pairwise subjects: ``sector`` for a list of one sector's subjects, else identifiers
    ``SECTOR<TAB>SUBJECT`` (an empty sector: a vault pseudonym), as ``list_formats`` reads them.

    A subject of another sector finds no row (its row id and key come from the sector it was given
    with), so it is unknown, like a pseudonym the vault never had.
    """

    def __init__(self, store: Store, *, sector: str | None = None) -> None:
        super().__init__(store)
        self._sector = sector

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
        rows = _by_key(self._store, SECTOR_SUBJECTS, ROW_COLUMNS, ids) if ids else ()
        for key, pseudonym in batch.opened(rows):
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

