"""Four-eyes requests: one officer files, a different officer approves, the resolve run uses it once.

A request names the incident, the reason and the pseudonym list (its SHA-256 and number of lines);
its filer signs those fields. The approver signs the request's digest (fields + the filer's
signature), with a key that is not the filer's (the registry holds each key once and verifies
every officer's enrolment chain). Both signatures are checked against the registry when the run
starts, so a request changed in the store after signing is refused, and so is one that is
unapproved, approved by its own filer, or for another incident, reason or list.

Using an approval binds it to one run in the audit chain: a ``four_eyes.use`` record naming the
request and the run, written before the run opens anything. A request the audit chain shows used
is never used again, whatever its document in the store says; a run resuming with its request must
be the run that record names (``bound``), so neither an edited state file nor an edited request
document re-opens an approval.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..audit import AuditLog
from ..store import Collection, Store
from ..verify.b64 import b64url_encode
from . import audit_trail
from .errors import Refused
from .registry import Registry
from .statements import canonical, digest

PENDING, APPROVED, USED = "pending", "approved", "used"
USE_ACTION = "four_eyes.use"

REQUESTS = Collection(
    name="breach_requests",
    key="request_id",
    fields={
        "request_id": str,
        "incident": str,
        "reason": str,
        "pseudonyms_sha256": str,
        "entries": int,
        "requested_by": str,
        "requested_at": int,
        "request_signature": str,
        "approved_by": str,
        "approved_at": int,
        "approval_signature": str,
        "status": str,
        "used_by": str,
        "used_at": int,
        "used_run": str,
    },
    indexed=("incident",),
)
_REQUEST_FIELDS = ("request_id", "incident", "reason", "pseudonyms_sha256", "entries", "requested_by",
                   "requested_at")


def request_payload(doc: dict[str, Any]) -> bytes:
    """What the filer signs."""
    return canonical({"type": "breach-request", "v": 1, **{name: doc.get(name) for name in _REQUEST_FIELDS}})


def approval_payload(doc: dict[str, Any]) -> bytes:
    """What the approver signs: the whole signed request, by digest, and who approves when."""
    return canonical({"type": "breach-approval", "v": 1, "request_id": doc.get("request_id"),
                      "request_digest": digest(request_payload(doc), doc.get("request_signature")),
                      "approved_by": doc.get("approved_by"), "approved_at": doc.get("approved_at")})


def new_request_id() -> str:
    return "req-" + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


class FourEyes:
    """Files, approves, checks and uses requests."""

    def __init__(self, store: Store, registry: Registry, audit: AuditLog, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._registry = registry
        self._audit = audit
        self._clock = clock

    def get(self, request_id: str) -> dict[str, Any]:
        doc = self._store.get(REQUESTS, request_id) if request_id else None
        if doc is None:
            raise Refused(f"there is no four-eyes request {request_id!r}")
        return doc

    def file(self, *, officer: str, key: Ed25519PrivateKey, incident: str, reason: str,
             pseudonyms_sha256: str, entries: int) -> dict[str, Any]:
        """A new pending request signed by ``officer`` (whose key must be the registered one)."""
        if not incident.strip() or not reason.strip():
            raise Refused("a request needs an incident id and a reason")
        doc: dict[str, Any] = {
            "request_id": new_request_id(), "incident": incident, "reason": reason,
            "pseudonyms_sha256": pseudonyms_sha256, "entries": entries, "requested_by": officer,
            "requested_at": int(self._clock()), "status": PENDING,
        }
        doc["request_signature"] = b64url_encode(key.sign(request_payload(doc)))
        self._registry.check_signature(officer, doc["request_signature"], request_payload(doc))
        self._store.insert(REQUESTS, doc)
        return doc

    def approve(self, request_id: str, *, officer: str, key: Ed25519PrivateKey,
                pseudonyms_sha256: str | None = None) -> dict[str, Any]:
        """Approve a pending request filed by someone else; optionally confirm the list it names."""
        doc = self.get(request_id)
        filer_print = self._registry.check_signature(doc["requested_by"], doc.get("request_signature"),
                                                     request_payload(doc))
        if doc["status"] != PENDING:
            raise Refused(f"request {request_id} is {doc['status']}, not pending")
        if officer == doc["requested_by"]:
            raise Refused("an officer cannot approve their own request")
        if pseudonyms_sha256 is not None and pseudonyms_sha256 != doc["pseudonyms_sha256"]:
            raise Refused(f"the pseudonym list you hold is not the one request {request_id} names")
        doc.update(approved_by=officer, approved_at=int(self._clock()))
        doc["approval_signature"] = b64url_encode(key.sign(approval_payload(doc)))
        if self._registry.check_signature(officer, doc["approval_signature"], approval_payload(doc)) == filer_print:
            raise Refused("the approver's key is the filer's key")
        changes = {k: doc[k] for k in ("approved_by", "approved_at", "approval_signature")} | {"status": APPROVED}
        if self._store.update(REQUESTS, {"request_id": request_id, "status": PENDING}, changes) != 1:
            raise Refused(f"request {request_id} was approved or changed meanwhile")
        doc["status"] = APPROVED
        return doc

    def check(self, request_id: str, *, incident: str, reason: str, pseudonyms_sha256: str) -> dict[str, Any]:
        """The approved (or used) request, if it covers exactly this run; ``Refused`` with the reason otherwise."""
        doc = self.get(request_id)
        filer = self._registry.check_signature(doc["requested_by"], doc.get("request_signature"), request_payload(doc))
        if doc.get("status") == PENDING or not doc.get("approved_by"):
            raise Refused(f"request {request_id} is not approved yet")
        approver = self._registry.check_signature(doc["approved_by"], doc.get("approval_signature"),
                                                  approval_payload(doc))
        if doc["approved_by"] == doc["requested_by"] or approver == filer:
            raise Refused(f"request {request_id} was approved by its own filer")
        if doc["incident"] != incident:
            raise Refused(f"request {request_id} is for incident {doc['incident']}, not {incident}")
        if doc["reason"] != reason:
            raise Refused(f"the reason differs from the one request {request_id} approves")
        if doc["pseudonyms_sha256"] != pseudonyms_sha256:
            raise Refused(f"the pseudonym list is not the one request {request_id} approves")
        if doc.get("status") not in (APPROVED, USED):
            raise Refused(f"request {request_id} has an unknown status")
        return doc

    def use(self, doc: dict[str, Any], *, operator: str, run_id: str) -> None:
        """Spend the checked request ``doc`` on this new run: once, bound to the run in the audit chain."""
        request_id = doc["request_id"]
        self._refuse_if_used(request_id)
        changes = {"status": USED, "used_by": operator, "used_at": int(self._clock()), "used_run": run_id}
        if self._store.update(REQUESTS, {"request_id": request_id, "status": APPROVED}, changes) != 1:
            raise Refused(f"request {request_id} was already used")
        self._audit.append(actor=operator, action=USE_ACTION, reason=doc["reason"], incident=doc["incident"],
                           details={"request_id": request_id, "run_id": run_id,
                                    "pseudonyms_sha256": doc["pseudonyms_sha256"],
                                    "requested_by": doc["requested_by"], "approved_by": doc["approved_by"]})
        first = self._uses(request_id)[0]
        if audit_trail.detail(first, "run_id") != run_id:
            raise Refused(f"request {request_id} was used by run {audit_trail.detail(first, 'run_id')} meanwhile")

    def bound(self, doc: dict[str, Any], *, run_id: str) -> None:
        """Refuse unless ``doc`` was used by the run ``run_id``, in its document and in the audit chain."""
        request_id = doc["request_id"]
        if doc.get("status") != USED or doc.get("used_run") != run_id:
            raise Refused(f"request {request_id} was not used by run {run_id}: the run cannot resume with it")
        uses = self._uses(request_id)
        if not uses or audit_trail.detail(uses[0], "run_id") != run_id:
            raise Refused(f"the audit log does not bind request {request_id} to run {run_id}: "
                          "the run cannot resume with it")

    def _uses(self, request_id: str) -> list[dict[str, Any]]:
        """The audit chain's ``four_eyes.use`` records of this request, oldest first."""
        return [r for r in audit_trail.records(self._store, USE_ACTION)
                if audit_trail.detail(r, "request_id") == request_id]

    def _refuse_if_used(self, request_id: str) -> None:
        uses = self._uses(request_id)
        if uses:
            raise Refused(f"request {request_id} was already used (by run {audit_trail.detail(uses[0], 'run_id')}, "
                          f"audit record {uses[0]['seq']})")


def four_eyes_policy(*, production: bool, required: bool) -> bool:
    """Whether a resolution needs an approved request; production never resolves without one."""
    if production and not required:
        raise Refused("four-eyes is switched off (IDENTITY_FOUR_EYES_REQUIRED=false): production never "
                      "resolves pseudonyms without a second officer's approval")
    return required or production
