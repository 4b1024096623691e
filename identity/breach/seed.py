"""Filling a store with many identities quickly, for benchmarks and tests of the breach run.

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

from ..sealing import Sealer
from ..store import SQLiteStore, Store
from ..vault import ACTIVE, ERASED, IDENTITIES, new_pseudonym

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
                   "last_login_at": None, "status": ERASED, "status_changed_at": now}
            continue
        if distinct_seals is None or len(seals) < distinct_seals:
            sealed = sealer.seal(email_for(i).encode("ascii"))
            if distinct_seals is not None:
                seals.append(sealed)
        else:
            sealed = seals[i % distinct_seals]
        yield {"pseudonym": pseudonym, "blind_index": f"bench-{pseudonym}", "sealed_email": sealed,
               "created_at": now, "last_login_at": None, "status": ACTIVE, "status_changed_at": now}


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
            erased += first["status"] == ERASED
        while batch := list(islice(docs, BULK_BATCH)):
            _insert_many(store, batch)
            listing.writelines(d["pseudonym"] + "\n" for d in batch)
            erased += sum(d["status"] == ERASED for d in batch)
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
