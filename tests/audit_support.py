"""Audit signing in tests: a throwaway service audit key, a signed log, the keys that verify it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from identity.audit import AUDIT_LOG, AuditLog, record_hash
from identity.audit_heads import ExportedHead, FileHeads, read_heads
from identity.audit_signing import AuditSigner, OfficerKeyLookup, ServiceSigner, TrustedKeys
from identity.store import Store
from tests.lookup_support import present

SERVICE_SIGNER = ServiceSigner(Ed25519PrivateKey.generate())


def signed_log(store: Store, *, signer: AuditSigner = SERVICE_SIGNER, heads: Path | None = None,
               **kwargs: Any) -> AuditLog:
    """An ``AuditLog`` that signs with the test service key (and exports heads to ``heads`` if given)."""
    return AuditLog(store, signer=signer, heads=FileHeads(heads) if heads else None, **kwargs)


def trusted(*service: ServiceSigner, officers: dict[str, Ed25519PublicKey] | None = None,
            officer_key: OfficerKeyLookup | None = None) -> TrustedKeys:
    """The public halves of ``service`` (default: the test service key) and officers' keys by name."""
    keys = [s.private_key.public_key() for s in (service or (SERVICE_SIGNER,))]
    if officer_key is None and officers is not None:
        officer_key = officers.get
    return TrustedKeys(keys, officer_key=officer_key)


def exported_heads(*paths: Path) -> list[ExportedHead]:
    """The heads read from ``paths``, every line of them well formed (an unreadable one fails the test)."""
    heads = []
    for head in read_heads(paths):
        assert isinstance(head, ExportedHead), head
        heads.append(head)
    return heads


def rewrite(store: Store, seq: int, changes: dict[str, Any], *, signer: AuditSigner | None = None,
            relink: bool = True) -> None:
    """The attacker's edit: change record ``seq``, recompute its hash (and re-sign with ``signer`` if
    given), then re-link and re-hash every later record the same way, as someone with write access to
    the store would."""
    prev = present(store.get(AUDIT_LOG, seq - 1))["hash"] if seq > 1 else "0" * 64
    last = max(r["seq"] for r in store.find(AUDIT_LOG, {})) if relink else seq
    for s in range(seq, last + 1):
        doc = store.get(AUDIT_LOG, s)
        if doc is None:
            continue
        doc.update(changes if s == seq else {})
        doc["prev_hash"] = prev
        if signer is not None:
            doc["signer"] = signer.signer_id
        doc["hash"] = record_hash(doc)
        if signer is not None:
            doc["signature"] = signer.sign(doc["hash"])
        store.delete(AUDIT_LOG, {"seq": s})
        store.insert(AUDIT_LOG, doc)
        prev = doc["hash"]
