"""Append-only, hash-chained audit log in the vault's store.

Each record carries the SHA-256 of the previous record (``prev_hash``) and its own hash over a
canonical JSON encoding of every field. Sequence numbers are dense (1, 2, 3, …) and unique, so a
changed, deleted, inserted or reordered record breaks the chain at a point ``verify_chain`` names.
Records name actors, actions, reasons, incident ids, counts and hashes of pseudonym lists —
never an e-mail address.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from .store import Collection, DuplicateKeyError, Gt, Order, Store, StoreUnavailable

GENESIS_HASH = "0" * 64
APPEND_ATTEMPTS = 50
VERIFY_BATCH = 1000

AUDIT_LOG = Collection(
    name="audit_log",
    key="seq",
    fields={
        "seq": int,
        "at": float,
        "actor": str,
        "action": str,
        "outcome": str,
        "reason": str,
        "incident": str,
        "counts": dict,
        "subjects_hash": str,
        "details": dict,
        "prev_hash": str,
        "hash": str,
    },
    indexed=("incident", "action"),
)
_HASHED_FIELDS = tuple(name for name in AUDIT_LOG.fields if name != "hash")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every field but ``hash`` (absent fields count as null)."""
    canonical = json.dumps(
        {name: record.get(name) for name in _HASHED_FIELDS}, sort_keys=True, separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def subjects_hash(pseudonyms: list[str] | tuple[str, ...]) -> str:
    """A hash naming a list of pseudonyms without listing them (order-independent)."""
    digest = hashlib.sha256()
    for pseudonym in sorted(set(pseudonyms)):
        digest.update(pseudonym.encode("utf-8") + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of ``verify_chain``: ok with the head, or the first bad record and why."""

    ok: bool
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None


class AuditLog:
    """Appends records to the chain and checks it."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def head(self) -> dict[str, Any] | None:
        return next(iter(self._store.find(AUDIT_LOG, {}, order=Order("seq", descending=True), limit=1)), None)

    def append(
        self,
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
        reason: str | None = None,
        incident: str | None = None,
        counts: Mapping[str, int] | None = None,
        subjects: list[str] | tuple[str, ...] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one record at the chain's head; concurrent writers retry on the unique ``seq``."""
        for attempt in range(APPEND_ATTEMPTS):
            head = self.head()
            record: dict[str, Any] = {
                "seq": 1 if head is None else head["seq"] + 1,
                "at": round(self._clock(), 6),
                "actor": actor,
                "action": action,
                "outcome": outcome,
                "reason": reason,
                "incident": incident,
                "counts": dict(counts) if counts else None,
                "subjects_hash": subjects_hash(subjects) if subjects is not None else None,
                "details": dict(details) if details else None,
                "prev_hash": GENESIS_HASH if head is None else head["hash"],
            }
            record["hash"] = record_hash(record)
            try:
                self._store.insert(AUDIT_LOG, record)
                return record
            except DuplicateKeyError:
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # another writer took this seq
        raise StoreUnavailable("the audit log is too busy to append; try again")

    def records(self, *, incident: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record in chain order (streamed in batches), optionally for one incident."""
        last = 0
        while True:
            where: dict[str, Any] = {"seq": Gt(last)}
            if incident is not None:
                where["incident"] = incident
            batch = list(self._store.find(AUDIT_LOG, where, order=Order("seq"), limit=VERIFY_BATCH))
            if not batch:
                return
            yield from batch
            last = batch[-1]["seq"]

    def verify_chain(self, *, expected_head: str | None = None) -> ChainReport:
        """Walk the chain; report the first record that was changed, removed, added or moved.

        :param expected_head: a head hash printed earlier and kept elsewhere. The chain may have
            grown since, but a record with that hash must still be in it; otherwise the end of the
            chain was cut off or rewritten (which the links alone cannot show).
        """
        expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
        anchored = expected_head is None
        for record in self.records():
            seq = record["seq"]
            if seq != expected_seq:
                what = "missing" if seq > expected_seq else "out of order"
                return ChainReport(False, count, prev_hash, expected_seq, f"record {expected_seq} is {what}")
            if record["prev_hash"] != prev_hash:
                return ChainReport(False, count, prev_hash, seq, f"record {seq} does not follow record {seq - 1}")
            if record_hash(record) != record["hash"]:
                return ChainReport(False, count, prev_hash, seq, f"record {seq} was altered")
            anchored = anchored or record["hash"] == expected_head
            prev_hash, expected_seq, count = record["hash"], seq + 1, count + 1
        if not anchored:
            return ChainReport(
                False, count, prev_hash, None,
                f"no record has the expected head {expected_head}: records after record {count} "
                "were removed, or the chain was rewritten",
            )
        return ChainReport(True, count, prev_hash)
