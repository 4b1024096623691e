"""Rectification of the e-mail address (GDPR Art. 16), bound to the person and to one browser session.

A change takes two fresh sign-ins at the upstream IdP, one after the other, in the same browser:

1. with the **current** address: the vault finds the live pseudonym by that address (an unknown,
   erased or restricted address ends the change, and the page says nothing about which it was);
2. with the **new** address, within ``ttl`` seconds of step 1.

Then the pseudonym is re-keyed to the new address (the old one is forgotten) and every session of it
ends: its grants and refresh tokens are revoked, its outstanding codes and the consent pages waiting
for its answer are dropped, and its account-page sessions end (whoever signed in with the old address
keeps nothing). The act is audited by pseudonym only.

The change's id is 256 random bits, held only in the person's session cookie (signed, HttpOnly); the
store keeps its SHA-256 as the key of the record, and the upstream legs carry only that hash. It is
never in a URL, a log record or an audit record. Each step is a compare-and-set on the record's stage,
so a replayed cookie, a second tab or a second callback finds nothing left to do.

Flask-free: ``identity.web.email_change`` holds the pages and checks that a completing sign-in belongs
to the browser session that started the change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from .account_sessions import AccountSessions
from .audit import AuditLog
from .errors import PageError
from .oauth.authorize import PendingAuthorization
from .oauth.consent import Consents
from .oauth.grants import Grants
from .oauth.records import new_secret_value, token_hash
from .signins import SignIns
from .store import Collection, Gt, In, Lt, Store
from .vault import EmailInUse, InvalidEmail, Vault

log = logging.getLogger(__name__)

RECTIFY_CURRENT = "rectify-current"  # the purpose of the step-1 sign-in
RECTIFY_NEW = "rectify-new"  # the purpose of the step-2 sign-in
STARTED, CURRENT_PROVEN, FINISHING, DONE = "started", "current_proven", "finishing", "done"

EMAIL_CHANGES = Collection(
    name="email_changes",
    key="change_hash",
    fields={
        "change_hash": str,
        "stage": str,
        "subject": str,
        "created_at": int,
        "proven_at": int,
        "expires_at": int,
    },
    indexed=("expires_at", "subject"),
)

EXPIRED = "This e-mail change has expired or was already completed. Nothing was changed; start again."
NOT_POSSIBLE = ("No e-mail change can be made for the address you signed in with. Nothing was changed. "
                "Sign in with the address you use for your account now.")
SAME_ADDRESS = "That is the address you already use. Nothing was changed."
IN_USE = "That e-mail address already belongs to another account; nothing was changed."
NOT_ACTIVE = "Your account is not active; nothing was changed."


class ChangeRefused(PageError):
    """A step cannot complete: ``message`` is for the person, ``reason`` (a fixed word) for the log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EmailChange:
    stage: str
    expires_at: int


@dataclass(frozen=True)
class Rectified:
    pseudonym: str
    grants_revoked: int


def change_reference(change_id: str) -> str:
    """What the store and the upstream legs know of a change: the SHA-256 of its id."""
    return token_hash(change_id)


class EmailChanges:
    """Starts, advances and completes e-mail changes; nothing here sees an address but in memory."""

    def __init__(
        self, *, store: Store, vault: Vault, grants: Grants, consents: Consents, sessions: AccountSessions,
        signins: SignIns, audit: AuditLog, ttl: int, clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._vault = vault
        self._grants = grants
        self._consents = consents
        self._sessions = sessions
        self._signins = signins
        self._audit = audit
        self._ttl = ttl
        self._clock = clock

    def __repr__(self) -> str:
        return "EmailChanges()"

    def start(self) -> str:
        """A new change; returns its id, which only the person's session may hold."""
        now = int(self._clock())
        change_id = new_secret_value()
        self._store.delete(EMAIL_CHANGES, {"expires_at": Lt(now)})  # tidy up abandoned changes
        self._store.insert(EMAIL_CHANGES, {"change_hash": change_reference(change_id), "stage": STARTED,
                                           "created_at": now, "expires_at": now + self._ttl})
        return change_id

    def find(self, change_id: object) -> EmailChange | None:
        """The live change with this id (not expired), or None."""
        doc = self._live(change_id)
        return None if doc is None else EmailChange(doc["stage"], doc["expires_at"])

    def next_step(self, change_id: object, *, return_to: str) -> PendingAuthorization | None:
        """Park the upstream sign-in of the change's next step; None if there is none to take."""
        doc = self._live(change_id)
        purpose = {STARTED: RECTIFY_CURRENT, CURRENT_PROVEN: RECTIFY_NEW}.get(doc["stage"]) if doc else None
        if doc is None or purpose is None:
            return None
        return self._signins.park_for_service(purpose=purpose, return_to=return_to, reference=doc["change_hash"])

    def cancel(self, change_id: object) -> None:
        """Drop a change that has not begun to complete."""
        if isinstance(change_id, str) and change_id:
            self._store.delete(EMAIL_CHANGES, {"change_hash": change_reference(change_id),
                                               "stage": In((STARTED, CURRENT_PROVEN))})

    # -- the two sign-ins ----------------------------------------------------------------------

    def current_address_proven(self, reference: str, email: str) -> str:
        """Step 1: the person signed in with ``email``; bind the change to its live pseudonym.

        Raises ``ChangeRefused`` (and ends the change) when the address has no active identity.
        """
        now = int(self._clock())
        doc = self._store.get(EMAIL_CHANGES, reference)
        if doc is None or doc["stage"] != STARTED or doc["expires_at"] <= now:
            raise ChangeRefused(EXPIRED, "change_gone")
        try:
            identity = self._vault.find_by_email(email)
        except InvalidEmail:
            identity = None
        if identity is None or not identity.is_active:  # unknown, erased or restricted: one answer
            self._store.delete(EMAIL_CHANGES, {"change_hash": reference})
            raise ChangeRefused(NOT_POSSIBLE, "no_active_identity")
        moved = self._store.update(
            EMAIL_CHANGES, {"change_hash": reference, "stage": STARTED, "expires_at": Gt(now)},
            {"stage": CURRENT_PROVEN, "subject": identity.pseudonym, "proven_at": now, "expires_at": now + self._ttl})
        if moved != 1:
            raise ChangeRefused(EXPIRED, "change_gone")
        log.info("e-mail change: current address proven")  # no pseudonym: personal data
        return identity.pseudonym

    def new_address_proven(self, reference: str, email: str) -> Rectified:
        """Step 2: re-key the pseudonym to ``email``, end every session of it, audit; one time only.

        Raises ``ChangeRefused`` (and ends the change) if step 1 is missing or too old, the address
        is the current one or another identity's, or the identity is no longer active.
        """
        now = int(self._clock())
        doc = self._store.get(EMAIL_CHANGES, reference)
        if doc is None or doc["stage"] != CURRENT_PROVEN or doc["expires_at"] <= now:
            raise ChangeRefused(EXPIRED, "change_gone")
        taken = self._store.update(EMAIL_CHANGES, {"change_hash": reference, "stage": CURRENT_PROVEN,
                                                   "expires_at": Gt(now)}, {"stage": FINISHING})
        if taken != 1:
            raise ChangeRefused(EXPIRED, "change_gone")
        try:
            result = self._rectify(doc["subject"], email)
        except ChangeRefused:
            self._store.delete(EMAIL_CHANGES, {"change_hash": reference})
            raise
        self._store.update(EMAIL_CHANGES, {"change_hash": reference}, {"stage": DONE})
        return result

    def _rectify(self, subject: str, email: str) -> Rectified:
        try:
            holder = self._vault.find_by_email(email)
        except InvalidEmail:
            raise ChangeRefused(NOT_POSSIBLE, "new_address_malformed") from None
        if holder is not None:
            same = holder.pseudonym == subject
            raise ChangeRefused(SAME_ADDRESS if same else IN_USE, "same_address" if same else "address_in_use")
        identity = self._vault.find(subject)
        if identity is None or not identity.is_active:
            raise ChangeRefused(NOT_ACTIVE, "identity_not_active")
        # Sessions end before the re-key (a failure after it leaves no session of the old address)
        # and again after it, for a login with the old address that raced the re-key.
        revoked = self._end_sessions(subject)
        try:
            self._vault.rekey(subject, email)
        except EmailInUse:
            raise ChangeRefused(IN_USE, "address_in_use") from None
        except LookupError:
            raise ChangeRefused(NOT_ACTIVE, "identity_not_active") from None
        self._end_sessions(subject)
        self._store.delete(EMAIL_CHANGES, {"subject": subject, "stage": In((STARTED, CURRENT_PROVEN))})
        self._vault.record_login(subject)
        self._audit.append(actor="subject", action="subjects.rectify",
                           reason="e-mail change proven upstream with the current and the new address",
                           counts={"grants_revoked": revoked}, details={"pseudonym": subject})
        log.info("e-mail change completed", extra={"grants_revoked": revoked})
        return Rectified(subject, revoked)

    def _end_sessions(self, subject: str) -> int:
        """Everything a sign-in with the address gave: grants (and their refresh tokens), unspent codes,
        consent pages waiting for an answer, account-page sessions. How many grants were revoked."""
        revoked = self._grants.revoke_all_for_subject(subject, reason="e-mail address changed")
        self._consents.drop_waiting(subject)
        self._sessions.end_all_for(subject)
        return revoked

    def _live(self, change_id: object) -> dict[str, Any] | None:
        if not isinstance(change_id, str) or not change_id:
            return None
        doc = self._store.get(EMAIL_CHANGES, change_reference(change_id))
        if doc is None or doc["expires_at"] <= self._clock():
            return None
        return doc
