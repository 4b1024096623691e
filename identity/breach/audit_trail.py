"""The facts the breach path reads back from the audit chain: the founding, revocations, uses, completed runs.

The store is writable by an operator; the hash-chained audit log is the record they cannot rewrite
unseen. A record is relied on only if its own hash is right and the record after it links to it,
so changing one in place means rewriting the rest of the chain (which ``scripts/audit.py verify
--expect-head`` shows). Removing one breaks the chain the same way.
"""

from __future__ import annotations

from typing import Any

from ..audit import AUDIT_LOG, record_hash
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
    if record_hash(record) != record["hash"]:
        raise Refused(f"audit record {seq} was altered (scripts/audit.py verify)")
    following = store.get(AUDIT_LOG, seq + 1)
    if following is not None and following["prev_hash"] != record["hash"]:
        raise Refused(f"audit record {seq + 1} does not follow record {seq} (scripts/audit.py verify)")
