"""Data-subject rights (GDPR Art. 15–20): access, export, erasure, restriction, closing, retention purges.

Flask-free: the ``/me`` endpoints, the account page and ``scripts/subjects.py`` all call
``SubjectRights``. Every act is written to the audit log by pseudonym only, with a reason that holds no
e-mail address (``reason_problem``). The retention schedule (what "cancelled" means, the periods, the
record of purge runs) is in ``retention``.

Every act survives an interruption at any step (a store failure, a crash): it is noted before its first
step (``ERASURES``, ``STATUS_CHANGES``), each step is harmless to repeat, and the note goes only after
the audit record; the same request again, or the next purge, finishes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from .account_sessions import ACCOUNT_SESSIONS, AccountSessions
from .audit import AuditLog
from .audit_index import SubjectHistory
from .email_change import EMAIL_CHANGES
from .logs import EMAIL_PATTERN, security_event
from .oauth.clients import ClientRegistry
from .oauth.consent import PENDING_CONSENTS, Consents
from .oauth.grants import Grant, Grants
from .oauth.subjects import Subjects
from .oauth.records import (
    AUTHORIZATION_CODES,
    GRANTS,
    ISSUED_ACCESS_TOKENS,
    PENDING_AUTHORIZATIONS,
    REFRESH_TOKENS,
    REVOKED_ACCESS_TOKENS,
)
from .retention import (
    DEFAULT_CANCELLED_FOR,
    DEFAULT_INACTIVE_FOR,
    check_cancelled_for,
    check_period,
    parse_period,
    record_purge_run,
)
from .store import Collection, DuplicateKeyError, Lt, Store, StoreUnavailable
from .vault import IDENTITY_ACTIVE, IDENTITY_CLOSED, IDENTITY_ERASED, IDENTITY_RESTRICTED, Vault

__all__ = ["ConnectedApp", "NotAllowed", "PurgeReport", "SubjectRights", "UnknownSubject", "iso", "parse_period",
           "reason_problem"]

PURGE_BATCH = 500
EMAIL_NOTE = ("held only sealed to the data protection officer's public key; this service cannot read it. "
              "Ask the data protection officer for it.")
SUBJECTS_NOTE = ("the identifier ('sub') each group of services (a sector) knows you by; services with public "
                 "subjects know you by your pseudonym. Quote it when you exercise your rights at such a service.")

#: Collections whose records die at ``expires_at`` (the retention purge removes them).
EXPIRING: list[tuple[Collection, str]] = [
    (PENDING_AUTHORIZATIONS, "expires_at"),
    (AUTHORIZATION_CODES, "expires_at"),
    (REFRESH_TOKENS, "expires_at"),
    (ISSUED_ACCESS_TOKENS, "expires_at"),
    (REVOKED_ACCESS_TOKENS, "expires_at"),
    (GRANTS, "expires_at"),
    (EMAIL_CHANGES, "expires_at"),
    (PENDING_CONSENTS, "expires_at"),
    (ACCOUNT_SESSIONS, "expires_at"),
]

#: restrictions the person asked for themselves (the account page), which they may also lift
SELF_RESTRICTIONS = Collection(
    name="self_restrictions",
    key="pseudonym",
    fields={"pseudonym": str, "restricted_at": int},
)


#: erasures begun and not finished yet (a store failure or a crash midway): ``erase`` again, or the next purge,
#: finishes them. ``via`` as in the ``erasure`` security event; ``actor`` and ``reason`` for the audit record.
ERASURES = Collection(
    name="erasures_in_progress",
    key="pseudonym",
    fields={"pseudonym": str, "started_at": int, "via": str, "actor": str, "reason": str},
)
#: erasures asked for one person, audited one by one (the purge's own are counted in its record)
REQUESTED = ("operator", "self-service")

#: status changes begun and not finished yet (a store failure or a crash midway), one a person at most: the same
#: request again, the person's next status change or erasure, or the next purge finishes them and writes their
#: audit record (with ``actor`` and ``reason``).
STATUS_CHANGES = Collection(
    name="status_changes_in_progress",
    key="pseudonym",
    fields={"pseudonym": str, "action": str, "by_subject": bool, "actor": str, "reason": str, "started_at": int},
)
#: each status change: the status it starts from, the status it leads to
STATUS_MOVES: dict[str, tuple[str, str]] = {
    "restrict": (IDENTITY_ACTIVE, IDENTITY_RESTRICTED),
    "unrestrict": (IDENTITY_RESTRICTED, IDENTITY_ACTIVE),
    "close": (IDENTITY_ACTIVE, IDENTITY_CLOSED),
    "reopen": (IDENTITY_CLOSED, IDENTITY_ACTIVE),
}
#: the purge leaves a status change this recent to the request that is carrying it out
STATUS_CHANGE_GRACE = 300
#: a reason is a sentence or a ticket reference (and the e-mail search below takes time quadratic in its length)
MAX_REASON_LENGTH = 500


def reason_problem(reason: str) -> str | None:
    """Why ``reason`` cannot go into the audit log, or None: it must say why, in at most ``MAX_REASON_LENGTH``
    characters, and hold no e-mail address (the signed log keeps it for good, next to the pseudonym, also after
    erasure has forgotten the person's address)."""
    if not reason.strip():
        return "must say why"
    if len(reason) > MAX_REASON_LENGTH:
        return f"is at most {MAX_REASON_LENGTH} characters: name a ticket for the rest"
    if "@" in reason and EMAIL_PATTERN.search(reason):
        return "must not contain an e-mail address (the audit log keeps it for good): name a ticket instead"
    return None


def _check_reason(reason: str) -> None:
    problem = reason_problem(reason)
    if problem is not None:
        raise ValueError(f"the reason {problem}")


class UnknownSubject(LookupError):
    """No identity with that pseudonym (or it is erased, where that matters)."""


class NotAllowed(Exception):
    """The person may not do this themselves (e.g. lift a restriction an operator placed)."""


@dataclass(frozen=True)
class ConnectedApp:
    """An app that holds access to a person: their consent, live grants, or both."""

    client_id: str
    name: str | None
    third_party: bool
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    consented_at: int | None
    live_grants: int


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class PurgeReport:
    """What a purge erased (or, dry, would erase): ``identities`` counts both kinds, ``cancelled`` the closed ones,
    ``finished`` the erasures an interruption had left half-done (their identities counted by the run that began them)."""

    cutoff: int
    identities: int
    expired: dict[str, int]
    dry_run: bool
    cancelled_cutoff: int = 0
    cancelled: int = 0
    finished: int = 0


class SubjectRights:
    """What a person (or an operator on their behalf) can ask of the identity service."""

    def __init__(
        self, *, store: Store, vault: Vault, grants: Grants, clients: ClientRegistry, subjects: Subjects,
        audit: AuditLog, consents: Consents, sessions: AccountSessions, clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._consents = consents
        self._sessions = sessions
        self._vault = vault
        self._grants = grants
        self._clients = clients
        self._subjects = subjects
        self._audit = audit
        self._history = SubjectHistory(store, audit)
        self._clock = clock

    # -- access and export (Art. 15, 20) ------------------------------------------------------

    def describe(self, pseudonym: str) -> dict[str, Any]:
        """Pseudonym, created, last login, status and the apps holding active grants."""
        identity = self._vault.find(pseudonym)
        if identity is None or identity.status == IDENTITY_ERASED:
            raise UnknownSubject(pseudonym)
        return {
            "pseudonym": identity.pseudonym,
            "created_at": iso(identity.created_at),
            "last_login_at": iso(identity.last_login_at),
            "status": identity.status,
            "apps": self._apps(pseudonym),
        }

    def show(self, pseudonym: str, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        """``describe`` for an operator: the access is audited (``subjects.show``) before anything is returned.

        :raises UnknownSubject: no identity, or an erased one.
        :raises ValueError: ``reason`` holds an e-mail address (``reason_problem``).
        """
        if reason is not None:
            _check_reason(reason)
        summary = self.describe(pseudonym)
        self._audit.append(actor=actor, action="subjects.show", reason=reason, details={"pseudonym": pseudonym})
        return summary

    def _apps(self, pseudonym: str) -> list[dict[str, Any]]:
        apps = []
        for grant in self._grants.active_for_subject(pseudonym):
            client = self._clients.get(grant.client_id)
            apps.append({
                "client_id": grant.client_id,
                "name": client.name if client else None,
                "audience": grant.audience,
                "scope": grant.scope,
                "granted_at": iso(grant.created_at),
                "expires_at": iso(grant.expires_at),
            })
        return apps

    def export(self, pseudonym: str) -> dict[str, Any]:
        """Everything held about the person, machine-readable (Art. 20).

        Read through indexes (the person's audit records, their subject in each sector): its cost
        follows what is held about this person, not the size of the store or the audit log.
        """
        summary = self.describe(pseudonym)
        history = [{"at": iso(r["at"]), "action": r["action"], "outcome": r["outcome"]}
                   for r in self._history.records_of(pseudonym)]
        consents = [{"client_id": c.client_id, "scopes": list(c.scopes), "audiences": list(c.audiences),
                     "granted_at": iso(c.granted_at), "updated_at": iso(c.updated_at)}
                    for c in self._consents.for_subject(pseudonym)]
        return {
            "format": "identity-service-export/1",
            "generated_at": iso(self._clock()),
            "identity": {k: summary[k] for k in ("pseudonym", "created_at", "last_login_at", "status")},
            "email_address": EMAIL_NOTE,
            "grants": summary["apps"],
            "consents": consents,
            "subjects": {"note": SUBJECTS_NOTE, "sectors": self._subjects.subjects_of(pseudonym)},
            "history": history,
        }

    # -- the apps holding access (the account page) -------------------------------------------

    def connected_apps(self, pseudonym: str) -> list[ConnectedApp]:
        """Every app with the person's consent or a live grant, one entry per app."""
        consents = {c.client_id: c for c in self._consents.for_subject(pseudonym)}
        grants: dict[str, list[Grant]] = {}
        for grant in self._grants.active_for_subject(pseudonym):
            grants.setdefault(grant.client_id, []).append(grant)
        apps = []
        for client_id in sorted(set(consents) | set(grants)):
            client = self._clients.get(client_id)
            consent = consents.get(client_id)
            live = grants.get(client_id, [])
            scopes = set(consent.scopes if consent else ()) | {s for g in live for s in g.scope.split()}
            audiences = set(consent.audiences if consent else ()) | {g.audience for g in live}
            apps.append(ConnectedApp(
                client_id=client_id, name=client.name if client else None,
                third_party=bool(client and client.third_party), scopes=tuple(sorted(scopes)),
                audiences=tuple(sorted(audiences)), consented_at=consent.granted_at if consent else None,
                live_grants=len(live)))
        return apps

    def remove_access(self, pseudonym: str, client_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Withdraw consent (Art. 7(3)) and end the app's sessions: its refresh tokens stop working at once.

        :raises UnknownSubject: the app holds no access to the person (nothing to remove).
        """
        revoked = self._grants.revoke_for_client(pseudonym, client_id, reason="access removed by the person")
        withdrawn = self._consents.withdraw(pseudonym, client_id)
        self._store.delete(PENDING_CONSENTS, {"subject": pseudonym, "client_id": client_id})
        if not revoked and not withdrawn:
            raise UnknownSubject(pseudonym)
        self._audit.append(actor=actor, action="subjects.remove_access", reason=reason,
                           counts={"grants_revoked": revoked, "consents_withdrawn": int(withdrawn)},
                           details={"pseudonym": pseudonym, "client_id": client_id})
        return {"pseudonym": pseudonym, "client_id": client_id, "grants_revoked": revoked,
                "consent_withdrawn": withdrawn}

    # -- erasure and restriction (Art. 17, 18) -------------------------------------------------

    def erase(self, pseudonym: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Forget the e-mail link at once and end every session; neither the pseudonym nor any of the
        person's pairwise subjects can ever resolve again.

        Safe to repeat: an erasure interrupted midway (a store failure, a crash) is finished by the next
        call for the same pseudonym, or by the next purge. One finished already is ``UnknownSubject``.
        A status change of the person an interruption left half-done is finished (and audited) first.

        :raises ValueError: ``reason`` holds an e-mail address (``reason_problem``).
        """
        _check_reason(reason)
        identity = self._vault.find(pseudonym)
        if identity is None or (identity.status == IDENTITY_ERASED and not self._erasure_begun(pseudonym)):
            raise UnknownSubject(pseudonym)
        self._finish_pending_status_change(pseudonym)
        via = "self-service" if actor == "subject" else "operator"
        self._begin_erasure(pseudonym, via=via, actor=actor, reason=reason)
        self._vault.erase(pseudonym)  # False on a retry: erased already, the clean-up still runs
        revoked = self._clean_up_erasure(pseudonym, revoke_reason="erasure")
        self._record_erasure(pseudonym, via=via, actor=actor, reason=reason, revoked=revoked)
        self._store.delete(ERASURES, {"pseudonym": pseudonym})
        return {"pseudonym": pseudonym, "status": IDENTITY_ERASED, "grants_revoked": revoked}

    def _erasure_begun(self, pseudonym: str) -> bool:
        return self._store.get(ERASURES, pseudonym) is not None

    def _begin_erasure(self, pseudonym: str, *, via: str, actor: str, reason: str) -> bool:
        """Note the erasure before anything is erased: whatever interrupts it, a retry or the purge finds it.
        Whether this call wrote the note (False: one was there, begun before or under way elsewhere)."""
        try:
            self._store.insert(ERASURES, {"pseudonym": pseudonym, "started_at": int(self._clock()), "via": via,
                                          "actor": actor, "reason": reason})
        except DuplicateKeyError:
            return False  # begun before and interrupted (or under way elsewhere): a retry finishes it
        return True

    def _clean_up_erasure(self, pseudonym: str, *, revoke_reason: str) -> int:
        """Every step of an erasure after the vault's write, each harmless to repeat; how many grants the person had.

        The vault's link goes first: from then on nothing of the person is usable (an erased identity gets no
        token, refresh or introspection, nor a new pairwise subject), so an interruption leaves only records to
        remove. The last steps forget the pairwise subjects and revoke the grants once more: a code exchange or
        a refresh that passed its "active" check before the vault's write may record a subject or create a
        grant after the first pass, never after the second (``SubjectMap.record`` reads the status after its
        write; a code is dropped with its grant revoked, so its exchange creates nothing live).
        """
        self._subjects.forget(pseudonym)
        revoked = self._grants.revoke_all_for_subject(pseudonym, reason=revoke_reason)
        self._forget(pseudonym)
        self._subjects.forget(pseudonym)
        self._grants.revoke_all_for_subject(pseudonym, reason=revoke_reason)
        return revoked

    def _record_erasure(self, pseudonym: str, *, via: str, actor: str, reason: str, revoked: int) -> None:
        """The audit record and the security event of an erasure asked for one person."""
        self._audit.append(actor=actor, action="subjects.erase", reason=reason,
                           counts={"grants_revoked": revoked}, details={"pseudonym": pseudonym})
        security_event("erasure", "identity erased", via=via, identities=1, grants_revoked=revoked)

    def _forget(self, pseudonym: str) -> None:
        """What erasure removes besides the vault's link, the grants and the codes: consents, sessions."""
        self._consents.forget_subject(pseudonym)
        self._sessions.end_all_for(pseudonym)
        self._store.delete(SELF_RESTRICTIONS, {"pseudonym": pseudonym})

    def restrict(self, pseudonym: str, *, actor: str, reason: str, by_subject: bool = False) -> dict[str, Any]:
        """No new tokens, no refresh, introspection inactive — until ``unrestrict``.

        ``by_subject``: the person asked for it themselves (the account page), so they may lift it too. An
        operator's restriction removes any such mark (one an earlier release left, say), so the person
        cannot lift it. Repeatable after an interruption (``_change_status``).

        :raises UnknownSubject: no active identity.
        """
        return self._change_status(pseudonym, "restrict", actor=actor, reason=reason, by_subject=by_subject)

    def restricted_by_subject(self, pseudonym: str) -> bool:
        return self._store.get(SELF_RESTRICTIONS, pseudonym) is not None

    def unrestrict(self, pseudonym: str, *, actor: str, reason: str, by_subject: bool = False) -> dict[str, Any]:
        """Lift a restriction. ``by_subject``: the person asks; refused (``NotAllowed``) unless they placed it.

        The person's mark goes before the status: an interruption between the two leaves the person
        restricted with no mark, and the same request again (or the purge) finishes it.

        :raises UnknownSubject: no restricted identity.
        """
        return self._change_status(pseudonym, "unrestrict", actor=actor, reason=reason, by_subject=by_subject)

    # -- cancellation ------------------------------------------------------------------------

    def close(self, pseudonym: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Cancel an active account: every session ends now; the retention purge erases it later.

        Until then no token is issued or refreshed and introspection answers inactive, as for a
        restriction; ``reopen`` undoes it (the apps need a new login).

        :raises UnknownSubject: no active identity.
        """
        return self._change_status(pseudonym, "close", actor=actor, reason=reason)

    def reopen(self, pseudonym: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Withdraw a cancellation before the purge erased the account. Every grant from before it is revoked
        first (one a race or an interrupted ``close`` left live), so the apps need a new login.

        :raises UnknownSubject: no closed identity.
        """
        return self._change_status(pseudonym, "reopen", actor=actor, reason=reason)

    # -- status changes: noted, repeatable, audited ------------------------------------------

    def _change_status(self, pseudonym: str, action: str, *, actor: str, reason: str,
                       by_subject: bool = False) -> dict[str, Any]:
        """Carry out a status change (``STATUS_MOVES``) of the person, noted in ``STATUS_CHANGES`` until audited.

        A change of theirs an interruption left half-done is finished first; when it is this same request
        (the same action, by the same kind of actor), finishing it is the answer. Otherwise the identity must
        be in the status the action starts from.

        :raises UnknownSubject: the identity is not (or, meanwhile, no longer) in that status.
        :raises NotAllowed: the person lifts a restriction they did not place.
        :raises ValueError: ``reason`` holds an e-mail address (``reason_problem``).
        :raises StoreUnavailable: the store fails (the request may be repeated), or another change of the
            person's status is under way right now.
        """
        _check_reason(reason)
        pending = self._store.get(STATUS_CHANGES, pseudonym)
        if pending is not None:
            again = (pending["action"], bool(pending["by_subject"])) == (action, by_subject)
            done = self._finish_status_change({**pending, "actor": actor, "reason": reason} if again else pending)
            if again and done is not None:
                return done
        source, _ = STATUS_MOVES[action]
        identity = self._vault.find(pseudonym)
        if identity is None or identity.status != source:
            raise UnknownSubject(pseudonym)
        if action == "unrestrict" and by_subject and not self.restricted_by_subject(pseudonym):
            raise NotAllowed("the restriction was placed by an operator")
        note = {"pseudonym": pseudonym, "action": action, "by_subject": by_subject, "actor": actor,
                "reason": reason, "started_at": int(self._clock())}
        try:
            self._store.insert(STATUS_CHANGES, note)
        except DuplicateKeyError:
            raise StoreUnavailable("another change of this person's status is under way; try again") from None
        done = self._finish_status_change(note)
        if done is None:
            raise UnknownSubject(pseudonym)
        return done

    def _finish_pending_status_change(self, pseudonym: str) -> None:
        pending = self._store.get(STATUS_CHANGES, pseudonym)
        if pending is not None:
            self._finish_status_change(pending)

    def _finish_status_change(self, note: dict[str, Any]) -> dict[str, Any] | None:
        """Every step of the change ``note`` describes, each harmless to repeat, then its audit record; then the
        note goes. The status change itself is a conditional write: the steps before it run only while the
        identity is still in the status the change starts from. None when the identity is in neither status
        (erased, or changed otherwise meanwhile): the change was overtaken and is dropped, unaudited."""
        pseudonym, action = note["pseudonym"], note["action"]
        source, target = STATUS_MOVES[action]
        counts: dict[str, int] = {}
        identity = self._vault.find(pseudonym)
        status = None if identity is None else identity.status
        if status == source:
            counts.update(self._before_status_change(action, pseudonym))
            if self._vault.set_status(pseudonym, target, only_from=source):
                status = target
            else:
                identity = self._vault.find(pseudonym)
                status = None if identity is None else identity.status
        if status != target:
            self._store.delete(STATUS_CHANGES, {"pseudonym": pseudonym})
            return None
        counts.update(self._after_status_change(action, pseudonym, by_subject=bool(note["by_subject"])))
        self._audit.append(actor=note["actor"], action=f"subjects.{action}", reason=note["reason"],
                           counts=counts or None, details={"pseudonym": pseudonym})
        self._store.delete(STATUS_CHANGES, {"pseudonym": pseudonym})
        return {"pseudonym": pseudonym, "status": target, **counts}

    def _before_status_change(self, action: str, pseudonym: str) -> dict[str, int]:
        """The steps of ``action`` that must precede the status change; counts for the audit record."""
        if action == "unrestrict":  # the person's mark first: none outlives the restriction
            self._store.delete(SELF_RESTRICTIONS, {"pseudonym": pseudonym})
        elif action == "reopen":  # nothing from before the cancellation works again
            return {"grants_revoked": self._grants.revoke_all_for_subject(pseudonym, reason="account closed")}
        return {}

    def _after_status_change(self, action: str, pseudonym: str, *, by_subject: bool) -> dict[str, int]:
        """The steps of ``action`` that follow the status change; counts for the audit record."""
        if action == "restrict":
            self._store.delete(SELF_RESTRICTIONS, {"pseudonym": pseudonym})  # an operator's: none left behind
            if by_subject:
                try:
                    self._store.insert(SELF_RESTRICTIONS, {"pseudonym": pseudonym,
                                                           "restricted_at": int(self._clock())})
                except DuplicateKeyError:
                    pass  # placed by a concurrent repeat of this request
        elif action == "close":  # after the status: a grant an exchange created meanwhile is revoked too
            revoked = self._grants.revoke_all_for_subject(pseudonym, reason="account closed")
            self._consents.drop_waiting(pseudonym)
            self._sessions.end_all_for(pseudonym)
            return {"grants_revoked": revoked}
        return {}

    # -- retention ---------------------------------------------------------------------------

    def purge(self, *, actor: str, dry_run: bool, inactive_for: int = parse_period(DEFAULT_INACTIVE_FOR),
              cancelled_for: int = parse_period(DEFAULT_CANCELLED_FOR)) -> PurgeReport:
        """Finish every status change and erasure an interruption left half-done, then erase accounts closed
        ``cancelled_for`` seconds ago and identities (never restricted ones) with no login for ``inactive_for``;
        drop expired codes and tokens. A real run is audited and recorded for ``/readyz``.

        Each identity is erased only if it still meets the condition it was chosen by, checked in the erasing
        write itself: one who signed in, or an account reopened, while the run was under way is kept.

        :raises ValueError: ``cancelled_for`` would break the promise (``retention.check_cancelled_for``), or a
            period is not positive or longer than ``retention.MAX_PERIOD_YEARS`` years; before anything is done.
        """
        check_period(inactive_for)
        check_period(cancelled_for)
        check_cancelled_for(cancelled_for)
        now = int(self._clock())
        cutoff, cancelled_cutoff = now - inactive_for, now - cancelled_for
        # everything that can fail on its own, before the first erasure
        reason = f"no login since {iso(cutoff)}; closed before {iso(cancelled_cutoff)}"
        if dry_run:  # counted by the store: nothing loaded, whatever the number of identities
            identities, closed = self._vault.purge_counts(cutoff, cancelled_cutoff)
            expired = {coll.name: self._store.count(coll, {field: Lt(now)}) for coll, field in EXPIRING}
            return PurgeReport(cutoff, identities, expired, True, cancelled_cutoff, closed,
                               self._store.count(ERASURES, {}))
        changes = self._finish_begun_status_changes(before=now - STATUS_CHANGE_GRACE)
        finished = self._finish_begun_erasures()
        cancelled = self._erase_all(lambda: self._vault.closed_before(cancelled_cutoff, limit=PURGE_BATCH),
                                    lambda p: self._vault.erase_if_closed_before(p, cancelled_cutoff),
                                    actor=actor, reason="cancellation")
        inactive = self._erase_all(lambda: self._vault.inactive_since(cutoff, limit=PURGE_BATCH),
                                   lambda p: self._vault.erase_if_inactive(p, cutoff),
                                   actor=actor, reason="retention")
        expired = {coll.name: self._store.delete(coll, {field: Lt(now)}) for coll, field in EXPIRING}
        self._audit.append(actor=actor, action="subjects.purge", reason=reason,
                           counts={"identities_erased": cancelled + inactive, "cancelled_erased": cancelled,
                                   "erasures_finished": finished, "status_changes_finished": changes, **expired})
        security_event("erasure", "retention purge erased identities", via="retention",
                       identities=cancelled + inactive)
        record_purge_run(self._store, started_at=now, finished_at=int(self._clock()), inactive_for=inactive_for,
                         cancelled_for=cancelled_for, identities_erased=cancelled + inactive,
                         cancelled_erased=cancelled, expired=expired)
        return PurgeReport(cutoff, cancelled + inactive, expired, False, cancelled_cutoff, cancelled, finished)

    def _finish_begun_status_changes(self, *, before: int) -> int:
        """Finish the status changes an interruption left half-done and that began before ``before`` (a recent
        one is left to its request); how many. Each is audited as its request would have been."""
        finished = 0
        while batch := list(self._store.find(STATUS_CHANGES, {"started_at": Lt(before)}, limit=PURGE_BATCH)):
            for note in batch:
                self._finish_status_change(note)  # the note goes, carried out or overtaken
                finished += 1
        return finished

    def _finish_begun_erasures(self) -> int:
        """Finish the erasures an interruption left half-done (``ERASURES``); how many.

        One asked for a person gets the audit record and event its own call did not write (the person's
        request is carried out, whoever finishes it); one the purge began is counted in the purge's record,
        and finished only if its vault write happened (else this run's selection decides again).
        """
        finished = 0
        while batch := list(self._store.find(ERASURES, {}, limit=PURGE_BATCH)):
            for begun in batch:
                pseudonym, via = begun["pseudonym"], begun["via"]
                if via in REQUESTED:
                    self._finish_pending_status_change(pseudonym)
                    self._vault.erase(pseudonym)
                elif not self._is_erased(pseudonym):
                    self._store.delete(ERASURES, {"pseudonym": pseudonym})
                    continue
                revoked = self._clean_up_erasure(pseudonym, revoke_reason="erasure" if via in REQUESTED else via)
                if via in REQUESTED:
                    self._record_erasure(pseudonym, via=via, actor=begun["actor"], reason=begun["reason"],
                                         revoked=revoked)
                self._store.delete(ERASURES, {"pseudonym": pseudonym})
                finished += 1
        return finished

    def _is_erased(self, pseudonym: str) -> bool:
        identity = self._vault.find(pseudonym)
        return identity is not None and identity.status == IDENTITY_ERASED

    def _erase_all(self, batch_of: Callable[[], list[str]], erase: Callable[[str], bool], *, actor: str,
                   reason: str) -> int:
        """Erase every identity ``batch_of`` names, batch after batch, each by ``erase`` (the vault's write,
        conditional on what chose it); how many this run erased.

        Each is noted in ``ERASURES`` first, so that the next purge finishes one this run could not. One with
        a note already (an erasure under way elsewhere) is left to it; one that no longer meets the condition
        (signed in, reopened) is kept, its note removed.
        """
        erased = 0
        while batch := batch_of():
            erased_now = 0
            for pseudonym in batch:
                if not self._begin_erasure(pseudonym, via=reason, actor=actor, reason=reason):
                    continue
                if erase(pseudonym):
                    erased_now += 1
                elif not self._is_erased(pseudonym):
                    self._store.delete(ERASURES, {"pseudonym": pseudonym})
                    continue
                self._clean_up_erasure(pseudonym, revoke_reason=reason)
                self._store.delete(ERASURES, {"pseudonym": pseudonym})
            erased += erased_now
            if erased_now == 0:
                break  # none of the batch could be erased now (under way elsewhere, or kept): no progress
        return erased
