"""The benchmarks' one seeder: a store filled with many identities (and their pairwise subjects) quickly.

Each identity is what the vault makes for ``person{i}@bench.example`` on a first login: a pseudonym
from ``identity.vault.new_pseudonym``, the blind index from ``Vault.blind_index`` (so
``Vault.pseudonymise`` finds it as it finds a returning person) and the address sealed to the DPO
key by ``Sealer``. Sealing costs two key agreements, so only ``distinct_seals`` addresses are sealed and
the sealed values are reused: every record still costs one full open in a breach run, which is what it
measures. Pairwise subjects' rows are the service's own (``PairwiseKey``, ``row_id``, ``seal``).

Documents go in through the store contract's bulk insert (``Store.insert_many``, non-durable: a
benchmark's data), so seeding runs the same on every backend.
"""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

from identity.keys import Keyring
from identity.pairwise import SECTOR_SUBJECTS, PairwiseKey, SubjectMap, row_id, seal
from identity.sealing import Sealer
from identity.store import Store
from identity.store.base import BULK_BATCH
from identity.vault import IDENTITIES, IDENTITY_ACTIVE, Vault, new_pseudonym

DISTINCT_SEALS = 1000


def email_for(i: int) -> str:
    return f"person{i}@bench.example"


class IdentitySeeder:
    """Grows a vault to ``size`` identities in place (10 k → 100 k → 1 M), appending each new pseudonym to
    ``listing``, in order: line ``i`` is the pseudonym of ``email_for(i)``."""

    def __init__(self, store: Store, keyring: Keyring, listing: Path, *, distinct_seals: int = DISTINCT_SEALS) -> None:
        self.sealer = Sealer(keyring.dpo_public_key)
        self.vault = Vault(store, pepper=keyring.pepper, sealer=self.sealer)
        self.store = store
        self.listing = listing
        self.size = 0
        self._distinct = distinct_seals
        self._seals: list[str] = []

    def grow_to(self, size: int) -> float:
        """Add identities ``self.size … size - 1``; returns the seconds it took."""
        started = time.perf_counter()
        if not self._seals:
            self._seals = [self.sealer.seal(email_for(i).encode("ascii")) for i in range(self._distinct)]
        now = int(time.time())
        with open(self.listing, "a", encoding="ascii") as listing:
            while self.size < size:
                end = min(size, self.size + BULK_BATCH)
                docs = [{"pseudonym": new_pseudonym(), "blind_index": self.vault.blind_index(email_for(i)),
                         "sealed_email": self._seals[i % self._distinct], "created_at": now, "last_login_at": None,
                         "status": IDENTITY_ACTIVE, "status_changed_at": now} for i in range(self.size, end)]
                if self.store.insert_many(IDENTITIES, docs, durable=False) != len(docs):
                    raise RuntimeError("the store already holds some of these people: seed an empty one")
                listing.writelines(doc["pseudonym"] + "\n" for doc in docs)
                self.size = end
        return time.perf_counter() - started


def seed_sector_subjects(store: Store, key: PairwiseKey, sector: str, pseudonyms: Path, subjects_out: Path, *,
                         count: int | None = None) -> float:
    """Record the pairwise subject in ``sector`` of the first ``count`` listed pseudonyms (all by
    default), as the service records it when it first issues one, and write those subjects to
    ``subjects_out`` in the same order: a data set leaked by one service. Returns the seconds taken.
    """
    started = time.perf_counter()
    with open(pseudonyms, encoding="ascii") as source, open(subjects_out, "w", encoding="ascii") as listing:
        names = (line.strip() for line in islice(source, count))
        first = next(names, None)
        if first is not None:
            subject = key.subject(sector, first)
            SubjectMap(store).record(sector, subject, first)  # notes the sector, as the service does
            listing.write(subject + "\n")
        while batch := list(islice(names, BULK_BATCH)):
            subjects = [key.subject(sector, pseudonym) for pseudonym in batch]
            store.insert_many(SECTOR_SUBJECTS, ({"row": row_id(sector, subject), "sealed": seal(sector, subject, p)}
                                                for subject, p in zip(subjects, batch, strict=True)), durable=False)
            listing.writelines(subject + "\n" for subject in subjects)
    return time.perf_counter() - started
