"""The officer registry: who may file and approve breach resolutions, and how each of them got there.

Nobody is enrolled on someone's say-so. The first two officers are enrolled together in the
founding ceremony (``found``): one statement naming both public keys, signed by both. It happens
once, while the registry is empty, and the first ``officers.found`` record of the audit log names
its digest. Every later officer is enrolled by two other active officers: one signs the enrolment
(the new officer's name, key and proof of possession), a second confirms it with their own
signature (``enrol`` run by each), while the first is still active: a revoked key cannot start an
enrolment dated back to when it was valid and have it confirmed later. So no single person can create an officer, a second name for
themselves included. A revocation is a statement signed by another active officer and is
recorded in the audit log.

Whenever the registry hands out a key (``public_key``, ``check_signature``) it verifies that
officer's whole chain back to the founding ceremony: every signature, the proof of possession,
that each signer was active when they signed, that no other record holds the same key, and that
the audit log records no revocation of it. A record written into the store by anyone else (an
operator with database access) counts for nothing, and neither does un-revoking one there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..audit import AuditLog
from ..store import Collection, DuplicateKeyError, In, Store
from ..verify.b64 import b64url_encode
from . import audit_trail
from .ceremony import Founding
from .errors import Refused
from .officers import check_name, fingerprint, public_from_text, public_text, verify
from .statements import confirmation, enrolment, key_claim, revocation

FOUNDER, ENROLLED = "founder", "enrolled"
PENDING, ACTIVE, REVOKED = "pending", "active", "revoked"
FOUND_ACTION, ENROL_ACTION, REVOKE_ACTION = "officers.found", "officers.enrol", "officers.revoke"
CEREMONY = "founding"

OFFICERS = Collection(
    name="breach_officer_registry",
    key="officer",
    fields={
        "officer": str,
        "kind": str,
        "public_key": str,
        "fingerprint": str,
        "proof": str,
        "enrolled_by": str,
        "enrolled_at": int,
        "enrolment_signature": str,
        "confirmed_by": str,
        "confirmed_at": int,
        "confirmation_signature": str,
        "status": str,
        "revoked_by": str,
        "revoked_at": int,
        "revocation_signature": str,
    },
    unique=("fingerprint",),
)
FOUNDINGS = Collection(
    name="breach_officer_founding",
    key="ceremony",
    fields={"ceremony": str, "statement": str, "signatures": dict, "founded_at": int},
)


@dataclass(frozen=True)
class Verified:
    """An officer whose chain back to the founding ceremony checked out."""

    officer: str
    key: Ed25519PublicKey
    fingerprint: str
    status: str
    active_from: int | None  # None: never confirmed
    revoked_at: float | None

    def active_at(self, moment: float) -> bool:
        return (self.active_from is not None and self.active_from <= moment
                and (self.revoked_at is None or moment < self.revoked_at))

    @property
    def active(self) -> bool:
        return self.status == ACTIVE and self.active_from is not None and self.revoked_at is None


class Registry:
    """The officers' public keys in the store, each handed out only with a verified chain."""

    def __init__(self, store: Store, audit: AuditLog, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    # -- the founding ceremony -------------------------------------------------------------------

    def found(self, founding: Founding, *, by: str) -> dict[str, Any]:
        """Found the registry with a statement both founders signed; only ever once."""
        founders = founding.check()
        if by not in {f.officer for f in founders}:
            raise Refused("a founder submits the founding statement")
        existing = self._store.get(FOUNDINGS, CEREMONY)
        if existing is None:
            self._refuse_a_second_founding()
            try:
                self._store.insert(FOUNDINGS, {"ceremony": CEREMONY, "statement": founding.statement,
                                               "signatures": founding.signatures, "founded_at": int(self._clock())})
            except DuplicateKeyError as exc:
                raise Refused("the registry was founded meanwhile (the ceremony happens once)") from exc
        elif existing["statement"] != founding.statement or audit_trail.records(self._store, FOUND_ACTION):
            raise Refused("the registry is already founded (the ceremony happens once)")
        for one in founders:  # a founding interrupted before its audit record is completed by running it again
            doc = {"officer": one.officer, "kind": FOUNDER, "public_key": one.public_key,
                   "fingerprint": fingerprint(one.key), "enrolled_at": founding.made_at,
                   "confirmed_at": founding.made_at, "status": ACTIVE}
            try:
                self._store.insert(OFFICERS, doc)
            except DuplicateKeyError:
                held = self._store.get(OFFICERS, one.officer) or {}
                if (held.get("kind"), held.get("public_key")) != (FOUNDER, one.public_key):
                    raise Refused(f"the registry already holds {one.officer} or their key") from None
        details = {"founders": [f.officer for f in founders], "fingerprints": [fingerprint(f.key) for f in founders],
                   "statement_sha256": founding.sha256}
        self._audit.append(actor=by, action=FOUND_ACTION, details=details)
        return {"status": "founded", **details}

    def _refuse_a_second_founding(self) -> None:
        if self._store.count(OFFICERS, {}):
            raise Refused("the registry is not empty: the founding ceremony happens only once")
        if audit_trail.records(self._store, FOUND_ACTION):
            raise Refused("the audit log records an earlier founding: the ceremony happens only once")

    # -- enrolment and revocation ----------------------------------------------------------------

    def enrol(self, officer: str, key: Ed25519PublicKey, proof: str, *, by: str,
              signer: Ed25519PrivateKey) -> dict[str, Any]:
        """``by`` enrols ``officer`` (pending), or confirms the pending enrolment another officer signed."""
        check_name(officer)
        if not verify(key, proof, key_claim(officer, public_text(key))):
            raise Refused(f"the proof of possession is not {officer}'s for this key")
        if by == officer:
            raise Refused("nobody enrols themselves")
        existing = self._store.get(OFFICERS, officer)
        if existing is None:
            return self._start_enrolment(officer, key, proof, by, signer)
        if existing.get("status") != PENDING:
            raise Refused(f"officer {officer} is already enrolled or was revoked (names and keys are never reused)")
        if existing["public_key"] != public_text(key):
            raise Refused(f"the pending enrolment of {officer} names another key "
                          f"({existing['fingerprint']}): do not confirm it")
        return self._confirm_enrolment(existing, by, signer)

    def _start_enrolment(self, officer: str, key: Ed25519PublicKey, proof: str, by: str,
                         signer: Ed25519PrivateKey) -> dict[str, Any]:
        now = int(self._clock())
        doc: dict[str, Any] = {"officer": officer, "kind": ENROLLED, "public_key": public_text(key),
                               "fingerprint": fingerprint(key), "proof": proof, "enrolled_by": by,
                               "enrolled_at": now, "status": PENDING}
        doc["enrolment_signature"] = b64url_encode(signer.sign(enrolment(doc)))
        self._signed_now(by, doc["enrolment_signature"], enrolment(doc), now)
        try:
            self._store.insert(OFFICERS, doc)
        except DuplicateKeyError as exc:
            raise Refused(f"officer {officer} or this key is already enrolled (names and keys are never reused)") from exc
        self._audit.append(actor=by, action=ENROL_ACTION, outcome=PENDING,
                           details={"officer": officer, "fingerprint": doc["fingerprint"], "enrolled_by": by})
        return doc

    def _confirm_enrolment(self, doc: dict[str, Any], by: str, signer: Ed25519PrivateKey) -> dict[str, Any]:
        officer = doc["officer"]
        _Chain(self._store).officer(officer)  # the pending enrolment itself is sound
        if by == doc["enrolled_by"]:
            raise Refused(f"{by} signed the enrolment of {officer}: a second officer must confirm it")
        now = int(self._clock())
        if not _Chain(self._store).officer(doc["enrolled_by"]).active_at(now):
            raise Refused(f"{doc['enrolled_by']}, who signed the enrolment of {officer}, is no longer an active "
                          "officer: an active officer enrols them anew")
        doc = {**doc, "confirmed_by": by, "confirmed_at": now}
        doc["confirmation_signature"] = b64url_encode(signer.sign(confirmation(doc)))
        self._signed_now(by, doc["confirmation_signature"], confirmation(doc), now)
        changes = {k: doc[k] for k in ("confirmed_by", "confirmed_at", "confirmation_signature")} | {"status": ACTIVE}
        if self._store.update(OFFICERS, {"officer": officer, "status": PENDING}, changes) != 1:
            raise Refused(f"the enrolment of {officer} was confirmed or withdrawn meanwhile")
        self._audit.append(actor=by, action=ENROL_ACTION, details={
            "officer": officer, "fingerprint": doc["fingerprint"], "enrolled_by": doc["enrolled_by"],
            "confirmed_by": by})
        return {**doc, "status": ACTIVE}

    def revoke(self, officer: str, *, by: str, signer: Ed25519PrivateKey) -> dict[str, Any]:
        """``by`` withdraws ``officer`` (active, or a pending enrolment); never their own."""
        doc = self._store.get(OFFICERS, officer)
        if doc is None or doc.get("status") not in (PENDING, ACTIVE):
            raise Refused(f"{officer} is not an enrolled officer (or was revoked already)")
        if by == officer:
            raise Refused("another active officer revokes (nobody revokes themselves)")
        now = int(self._clock())
        doc = {**doc, "revoked_by": by, "revoked_at": now}
        doc["revocation_signature"] = b64url_encode(signer.sign(revocation(doc)))
        self._signed_now(by, doc["revocation_signature"], revocation(doc), now)
        changes = {k: doc[k] for k in ("revoked_by", "revoked_at", "revocation_signature")} | {"status": REVOKED}
        if self._store.update(OFFICERS, {"officer": officer, "status": In((PENDING, ACTIVE))}, changes) != 1:
            raise Refused(f"{officer} was revoked meanwhile")
        details = {"officer": officer, "fingerprint": doc["fingerprint"], "revoked_by": by}
        self._audit.append(actor=by, action=REVOKE_ACTION, details=details)
        return {"status": REVOKED, **details}

    def _signed_now(self, by: str, signature: str, payload: bytes, now: int) -> Verified:
        signer = _Chain(self._store).officer(by)
        if not signer.active:
            raise Refused(f"{by} is not an active enrolled officer")
        if not signer.active_at(now):
            raise Refused(f"{by} became an officer later than this machine's clock says it is now: check the clock")
        if not verify(signer.key, signature, payload):
            raise Refused(f"the key given is not the one enrolled for {by}")
        return signer

    # -- handing out keys ------------------------------------------------------------------------

    def public_key(self, officer: str) -> tuple[Ed25519PublicKey, str]:
        """The active officer's verified key and fingerprint; ``Refused`` otherwise."""
        found = _Chain(self._store).officer(officer)
        if not found.active:
            raise Refused(f"{officer} is not an active enrolled officer")
        return found.key, found.fingerprint

    def verified_key(self, officer: str) -> Ed25519PublicKey | None:
        """The key of an officer whose chain verifies and who was ever active, revoked ones included.

        What the audit log's verification needs: records an officer signed before leaving stay valid.
        """
        try:
            found = _Chain(self._store).officer(officer)
        except Refused:
            return None
        return found.key if found.active_from is not None else None

    def check_signature(self, officer: str, signature: str | None, payload: bytes) -> str:
        """Verify ``signature`` by ``officer``'s registered key; return the key's fingerprint."""
        key, print_ = self.public_key(officer)
        if not verify(key, signature, payload):
            raise Refused(f"the signature of {officer} does not match: the request was altered")
        return print_

    def all(self) -> list[dict[str, Any]]:
        """Every record, each with ``verified`` (its chain checks out) or the ``problem`` found."""
        chain, listed = _Chain(self._store), []
        for doc in self._store.find(OFFICERS, {}):
            shown = {k: v for k, v in doc.items() if v is not None and not k.endswith(("signature", "proof"))}
            try:
                found = chain.officer(doc["officer"])
                shown.update(verified=True, active=found.active)
            except Refused as exc:
                shown.update(verified=False, active=False, problem=str(exc))
            listed.append(shown)
        return listed


class _Chain:
    """One verification pass over the registry (each record is checked once, loops are refused)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._verified: dict[str, Verified] = {}
        self._founding: Founding | None = None
        self._revocations: dict[str, float] | None = None

    def officer(self, name: str, path: tuple[str, ...] = ()) -> Verified:
        if name in self._verified:
            return self._verified[name]
        if name in path:
            raise Refused(f"the enrolment chain of {name} loops")
        doc = self._store.get(OFFICERS, name)
        if doc is None:
            raise Refused(f"{name} is not an enrolled officer")
        key = public_from_text(doc.get("public_key") or "")
        print_ = fingerprint(key)
        if print_ != doc.get("fingerprint") or self._store.count(OFFICERS, {"fingerprint": print_}) != 1:
            raise Refused(f"the registry entry of {name} is inconsistent")
        if doc.get("status") not in (PENDING, ACTIVE, REVOKED):
            raise Refused(f"the registry entry of {name} has an unknown status")
        active_from: int | None
        if doc.get("kind") == FOUNDER:
            active_from = self._founder_since(name, doc["public_key"])
        else:
            active_from = self._enrolled_since(doc, key, (*path, name))
        found = Verified(name, key, print_, doc["status"], active_from, self._revoked_at(doc, print_))
        self._verified[name] = found
        return found

    def _founder_since(self, name: str, public_key: str) -> int:
        founding = self._the_founding()
        if founding.founder(name).public_key != public_key:
            raise Refused(f"the registry entry of {name} is not the one the founding ceremony names")
        return founding.made_at

    def _the_founding(self) -> Founding:
        if self._founding is None:
            marker = self._store.get(FOUNDINGS, CEREMONY)
            if marker is None:
                raise Refused("the officer registry was never founded (scripts/four_eyes.py found)")
            founding = Founding(marker["statement"], dict(marker.get("signatures") or {}))
            founding.check()
            anchors = audit_trail.records(self._store, FOUND_ACTION)
            if not anchors or audit_trail.detail(anchors[0], "statement_sha256") != founding.sha256:
                raise Refused("the founding ceremony in the store is not the one the audit log records")
            self._founding = founding
        return self._founding

    def _enrolled_since(self, doc: dict[str, Any], key: Ed25519PublicKey, path: tuple[str, ...]) -> int | None:
        name = doc["officer"]
        if not verify(key, doc.get("proof"), key_claim(name, doc["public_key"])):
            raise Refused(f"the enrolment of {name} carries no valid proof of possession")
        enroller = self._signer(doc.get("enrolled_by"), doc.get("enrolment_signature"), enrolment(doc),
                                doc.get("enrolled_at"), path, f"the enrolment of {name}")
        if doc.get("confirmation_signature") is None and doc["status"] != ACTIVE:
            return None  # pending, or withdrawn before it was confirmed
        confirmer = self._signer(doc.get("confirmed_by"), doc.get("confirmation_signature"), confirmation(doc),
                                 doc.get("confirmed_at"), path, f"the confirmation of {name}")
        if confirmer.officer == enroller.officer:
            raise Refused(f"the enrolment of {name} was not confirmed by a second officer")
        if not enroller.active_at(doc["confirmed_at"]):  # an enrolment counts once both vouch at the same time
            raise Refused(f"the enrolment of {name} was confirmed when {enroller.officer}, who signed it, "
                          "was no longer an active officer")
        return doc["confirmed_at"]

    def _signer(self, name: Any, signature: Any, payload: bytes, at: Any, path: tuple[str, ...],
                what: str) -> Verified:
        if not isinstance(name, str) or not isinstance(at, int) or not isinstance(signature, str):
            raise Refused(f"{what} is incomplete")
        signer = self.officer(name, path)
        if not signer.active_at(at):
            raise Refused(f"{what} is signed by {name}, who was not an active officer then")
        if not verify(signer.key, signature, payload):
            raise Refused(f"{what} is not signed by {name}")
        return signer

    def _revoked_at(self, doc: dict[str, Any], print_: str) -> float | None:
        if self._revocations is None:
            self._revocations = {}
            for record in audit_trail.records(self._store, REVOKE_ACTION):
                self._revocations.setdefault(audit_trail.detail(record, "fingerprint"), record["at"])
        moments = [self._revocations[print_]] if print_ in self._revocations else []
        if doc["status"] == REVOKED:
            moments.append(doc["revoked_at"] if isinstance(doc.get("revoked_at"), int) else 0)
        return min(moments) if moments else None
