"""Which audit records are about which person: an index beside the audit log, for the rights export.

The export lists the person's history (GDPR Art. 15, 20). Reading it from the audit log alone
would scan every record; instead each appended record that names a pseudonym
(``details.pseudonym``) gets an index row (seq, pseudonym), and the export reads the person's rows
and then just those records by sequence number: its cost follows the person's history, not the
log's length. Records written before the index existed are indexed once, on the first export
(``SubjectHistory``), and a marker says so.

The index holds nothing the audit log does not: pseudonyms and sequence numbers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from .store import Collection, DuplicateKeyError, In, Order, Store, StoreError

if TYPE_CHECKING:
    from .audit import AuditLog

log = logging.getLogger(__name__)

AUDIT_SUBJECTS = Collection(
    name="audit_subjects",
    key="seq",
    fields={"seq": int, "pseudonym": str},
    indexed=("pseudonym",),
)
AUDIT_INDEXES = Collection(name="audit_indexes", key="name", fields={"name": str, "through": int})
BACKFILLED = "subjects-backfilled"
READ_BATCH = 1000


def _pseudonym_of(record: Mapping[str, Any]) -> str | None:
    value = (record.get("details") or {}).get("pseudonym")
    return value if isinstance(value, str) and value else None


def index_record(store: Store, record: Mapping[str, Any]) -> None:
    """Index one appended record if it names a person (``AuditLog.append`` calls this).

    A store failure here is logged, not raised: the record itself is written and signed, and the
    audited action has happened; only the export's history would miss this line.
    """
    pseudonym = _pseudonym_of(record)
    if pseudonym is None:
        return
    try:
        store.insert(AUDIT_SUBJECTS, {"seq": record["seq"], "pseudonym": pseudonym})
    except DuplicateKeyError:
        pass
    except StoreError as exc:
        log.error("audit record %s is not in the subject history index: %s", record["seq"], exc)


class SubjectHistory:
    """The audit records about one person, found through the index."""

    def __init__(self, store: Store, audit: AuditLog) -> None:
        self._store = store
        self._audit = audit

    def records_of(self, pseudonym: str) -> Iterator[dict[str, Any]]:
        """The person's audit records in chain order."""
        from .audit import AUDIT_LOG  # the audit log imports this module

        self._backfill_once()
        seqs = [doc["seq"] for doc in self._store.find(AUDIT_SUBJECTS, {"pseudonym": pseudonym}, order=Order("seq"))]
        for start in range(0, len(seqs), READ_BATCH):
            batch = tuple(seqs[start:start + READ_BATCH])
            for record in self._store.find(AUDIT_LOG, {"seq": In(batch)}, order=Order("seq")):
                if _pseudonym_of(record) == pseudonym:  # the index row agrees with the signed record
                    yield record

    def _backfill_once(self) -> None:
        """Index the records appended before the index existed (once, then a marker says it is done)."""
        if self._store.get(AUDIT_INDEXES, BACKFILLED) is not None:
            return
        head = self._audit.head()
        through = 0 if head is None else int(head["seq"])
        for record in self._audit.records():
            if record["seq"] > through:
                break
            index_record(self._store, record)
        try:
            self._store.insert(AUDIT_INDEXES, {"name": BACKFILLED, "through": through})
        except DuplicateKeyError:
            pass  # another process finished the same backfill
