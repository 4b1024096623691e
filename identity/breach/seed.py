"""Filling a store with many identities (and their pairwise subjects) quickly, for benchmarks and tests
of the breach run.

Sealing costs two key agreements per e-mail, so a million distinct seals would take minutes. With
``distinct_seals=K`` only K e-mails are sealed and the sealed values are reused: every record still
costs one full open, which is what a benchmark of the breach run measures. On SQLite the records
are written in one transaction on a separate connection (bulk load; not a code path of the service).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..pairwise import SECTOR_SUBJECTS, PairwiseKey, SubjectMap, row_id, seal
from ..sealing import Sealer
from ..store import DuplicateKeyError, SQLiteStore, Store
from ..vault import IDENTITIES, IDENTITY_ACTIVE, IDENTITY_ERASED, new_pseudonym

BULK_BATCH = 10_000


@dataclass(frozen=True)
class Seeded:
    identities: int
    erased: int
    unknown: int
    seconds: float


def email_for(i: int) -> str:
    return f"person{i}@example.org"


def _docs(sealer: Sealer, n: int, erased_every: int, distinct_seals: int | None, now: int) -> Iterator[dict]:
    seals: list[str] = []
    for i in range(n):
        pseudonym = new_pseudonym()
        if erased_every and i % erased_every == erased_every - 1:
            yield {"pseudonym": pseudonym, "blind_index": None, "sealed_email": None, "created_at": now,
                   "last_login_at": None, "status": IDENTITY_ERASED, "status_changed_at": now}
            continue
        if distinct_seals is None or len(seals) < distinct_seals:
            sealed = sealer.seal(email_for(i).encode("ascii"))
            if distinct_seals is not None:
                seals.append(sealed)
        else:
            sealed = seals[i % distinct_seals]
        yield {"pseudonym": pseudonym, "blind_index": f"bench-{pseudonym}", "sealed_email": sealed,
               "created_at": now, "last_login_at": None, "status": IDENTITY_ACTIVE, "status_changed_at": now}


def seed_identities(store: Store, public_key: X25519PublicKey, n: int, pseudonyms_out: Path, *,
                    erased_every: int = 0, unknown: int = 0, distinct_seals: int | None = 1000) -> Seeded:
    """Insert ``n`` identities and write their pseudonyms (plus ``unknown`` made-up ones) to a file.

    Every ``erased_every``-th identity is erased (0: none). ``distinct_seals=None`` seals every
    e-mail separately (slow; for small tests whose output must be checked row by row).
    """
    started = time.perf_counter()
    docs = _docs(Sealer(public_key), n, erased_every, distinct_seals, int(time.time()))
    erased = 0
    with open(pseudonyms_out, "w", encoding="ascii") as listing:
        first = next(docs, None)
        if first is not None:
            store.insert(IDENTITIES, first)  # creates the table and its indexes
            listing.write(first["pseudonym"] + "\n")
            erased += first["status"] == IDENTITY_ERASED
        while batch := list(islice(docs, BULK_BATCH)):
            _insert_many(store, batch)
            listing.writelines(d["pseudonym"] + "\n" for d in batch)
            erased += sum(d["status"] == IDENTITY_ERASED for d in batch)
        listing.writelines(new_pseudonym() + "\n" for _ in range(unknown))
    return Seeded(n, erased, unknown, time.perf_counter() - started)


def _insert_many(store: Store, docs: list[dict]) -> None:
    if not isinstance(store, SQLiteStore):
        for doc in docs:
            store.insert(IDENTITIES, doc)
        return
    names = list(IDENTITIES.fields)
    conn = sqlite3.connect(Path(store.path), isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f'INSERT INTO "{IDENTITIES.name}" ({", ".join(names)}) VALUES ({", ".join("?" * len(names))})',
            [tuple(doc[name] for name in names) for doc in docs],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def seed_sector_subjects(store: Store, key: PairwiseKey, sector: str, pseudonyms: Path, subjects_out: Path, *,
                         count: int | None = None) -> float:
    """Record the pairwise subject in ``sector`` of the first ``count`` listed pseudonyms (all by
    default), as the service records it when it first issues one, and write those subjects to
    ``subjects_out`` in the same order: a data set leaked by one service. Returns the seconds taken.

    The rows are the service's own (``SubjectMap``'s derivation and sealing); on SQLite they are
    written in bulk on a separate connection, like the identities above.
    """
    started = time.perf_counter()
    mapping = SubjectMap(store)
    with open(pseudonyms, encoding="ascii") as source, open(subjects_out, "w", encoding="ascii") as listing:
        names = (line.strip() for line in islice(source, count))
        first = next(names, None)
        if first is not None:
            subject = key.subject(sector, first)
            mapping.record(sector, subject, first)  # creates the table and notes the sector
            listing.write(subject + "\n")
        while batch := list(islice(names, BULK_BATCH)):
            rows = []
            for pseudonym in batch:
                subject = key.subject(sector, pseudonym)
                rows.append((row_id(sector, subject), seal(sector, subject, pseudonym)))
                listing.write(subject + "\n")
            _insert_rows(store, rows)
    return time.perf_counter() - started


def _insert_rows(store: Store, rows: list[tuple[str, str]]) -> None:
    if not isinstance(store, SQLiteStore):
        for row, sealed in rows:
            try:
                store.insert(SECTOR_SUBJECTS, {"row": row, "sealed": sealed})
            except DuplicateKeyError:
                pass
        return
    conn = sqlite3.connect(Path(store.path), isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f'INSERT OR IGNORE INTO "{SECTOR_SUBJECTS.name}" ("row", "sealed") VALUES (?, ?)', rows)
        conn.execute("COMMIT")
    finally:
        conn.close()
