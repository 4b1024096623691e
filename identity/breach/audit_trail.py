"""The facts the breach path reads back from the audit chain: the founding, revocations, uses, completed runs.

The store is writable by an operator; the hash-chained audit log is the record they cannot rewrite
unseen. A record is relied on only if it sits in the chain (an integer ``seq`` from 1: a record
stored before record 1 is in no chain, ``verify_chain`` reports it), its own hash is right, it links
to the record before it, and the record after it links to it with its own hash right too. So
changing or inserting one means rewriting the records after it up to the head (which ``scripts/audit.py
verify`` shows against the exported heads). Removing one breaks the chain the same way.
"""

from __future__ import annotations

from typing import Any

from ..audit import AUDIT_LOG, GENESIS_HASH, record_hash
from ..store import Order, Store
from .errors import Refused


def records(store: Store, action: str, *, outcome: str = "ok", incident: str | None = None) -> list[dict[str, Any]]:
    """The sound records of one action (and outcome, optionally incident), oldest first."""
    where: dict[str, Any] = {"action": action, "outcome": outcome}
    if incident is not None:
        where["incident"] = incident
    found = list(store.find(AUDIT_LOG, where, order=Order("seq")))
    for record in found:
        _check_links(store, record)
    return found


def detail(record: dict[str, Any], name: str) -> Any:
    return (record.get("details") or {}).get(name)


def _check_links(store: Store, record: dict[str, Any]) -> None:
    seq = record["seq"]
    if type(seq) is not int or seq < 1:
        raise Refused(f"an audit record stored as {seq!r} is outside the chain (scripts/audit.py verify)")
    if record_hash(record) != record["hash"]:
        raise Refused(f"audit record {seq} was altered (scripts/audit.py verify)")
    before = None if seq == 1 else store.get(AUDIT_LOG, seq - 1)
    expected = GENESIS_HASH if seq == 1 else None if before is None else before["hash"]
    if before is not None and record_hash(before) != before["hash"]:
        raise Refused(f"audit record {seq - 1} was altered (scripts/audit.py verify)")
    if expected is None or record["prev_hash"] != expected:
        raise Refused(f"audit record {seq} does not follow record {seq - 1} (scripts/audit.py verify)")
    following = store.get(AUDIT_LOG, seq + 1)
    if following is not None and record_hash(following) != following["hash"]:
        raise Refused(f"audit record {seq + 1} was altered (scripts/audit.py verify)")
    if following is not None and following["prev_hash"] != record["hash"]:
        raise Refused(f"audit record {seq + 1} does not follow record {seq} (scripts/audit.py verify)")
