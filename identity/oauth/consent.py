"""Consent for third-party apps: remembered per person and app, asked again when an app asks for more.

A first-party client (the default) gets its code straight after the sign-in. A third-party client
(``scripts/clients.py add --third-party``) gets one only after the person allowed it the scopes it asked
for and the audience (the service) that will receive its tokens. The answer is kept per (person, app)
in ``consents``, whose key is both together (the unique index: one record per pair), and covers what was
allowed, scope by audience (``allowed``: a scope means what the service receiving the tokens makes of
it, so ``records:write`` allowed for one service is not allowed for another): a request for a scope not
allowed yet for that audience asks again, and allowing it adds to the record. A record from before
``allowed`` covers its scopes for its audience where it names only one, and nothing where it names more
(which scope went with which was not kept): the person is asked again. "Remove access" on the account
page withdraws it, together with the app's grants.

While the person decides, the authorization request waits in ``pending_consents`` under the SHA-256 of
a random id that only their browser session holds; ``take`` hands it out once.

Flask-free: ``identity.web.consent`` shows the page and binds the request to the browser session.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..store import Collection, DuplicateKeyError, Lt, Store
from .records import new_secret_value, token_hash

CLEANUP_ONE_IN = 64
GRANT_ATTEMPTS = 50  # compare-and-set rounds: every round some contender wins, so all finish well within

CONSENTS = Collection(
    name="consents",
    key="consent_key",  # "<pseudonym> <client id>": unique per person and app
    fields={
        "consent_key": str,
        "subject": str,
        "client_id": str,
        "scopes": list,
        "audiences": list,
        "allowed": list,  # "<audience> <scope>" for every scope allowed for an audience (module docstring)
        "granted_at": int,
        "updated_at": int,
        "version": int,  # compare-and-set: two Allows at once both end up in the record
    },
    indexed=("subject",),
)

PENDING_CONSENTS = Collection(
    name="pending_consents",
    key="consent_hash",
    fields={
        "consent_hash": str,
        "subject": str,
        "client_id": str,
        "redirect_uri": str,
        "redirect_uri_given": bool,
        "state": str,
        "scope": str,
        "audience": str,
        "code_challenge": str,
        "nonce": str,
        "auth_time": int,
        "created_at": int,
        "expires_at": int,
    },
    indexed=("expires_at", "subject"),
)

#: what of a parked authorization request the consent step keeps to issue the code afterwards
REQUEST_FIELDS = ("client_id", "redirect_uri", "redirect_uri_given", "state", "scope", "audience",
                  "code_challenge", "nonce")


def consent_key(subject: str, client_id: str) -> str:
    """Pseudonyms and client ids are ``a-z2-7``: a space keeps the pair unambiguous."""
    return f"{subject} {client_id}"


def consent_reference(consent_id: str) -> str:
    """What the store and the page's form know of a pending consent: the SHA-256 of its id."""
    return token_hash(consent_id)


def allowed_pairs(scopes: Iterable[str], audience: str) -> set[str]:
    """``scopes`` allowed for ``audience``, as ``allowed`` keeps them (audiences and scopes hold no space)."""
    return {f"{audience} {scope}" for scope in scopes}


@dataclass(frozen=True)
class Consent:
    subject: str
    client_id: str
    scopes: tuple[str, ...]  # every scope allowed, for some audience (what the account page lists)
    audiences: tuple[str, ...]
    granted_at: int
    updated_at: int
    allowed: frozenset[str] = frozenset()  # scope by audience (``allowed_pairs``): what ``covers`` decides on

    def covers(self, scopes: Iterable[str], audience: str) -> bool:
        return audience in self.audiences and allowed_pairs(scopes, audience) <= self.allowed


def _allowed(doc: Mapping[str, Any]) -> frozenset[str]:
    """The record's scope-by-audience pairs; for a record from before them, what its unions imply alone."""
    if doc.get("allowed") is not None:
        return frozenset(doc["allowed"])
    audiences: list[str] = list(doc.get("audiences") or ())
    if len(audiences) == 1:
        return frozenset(allowed_pairs(doc.get("scopes") or (), audiences[0]))
    return frozenset()


def _consent(doc: Mapping[str, Any]) -> Consent:
    return Consent(doc["subject"], doc["client_id"], tuple(doc.get("scopes") or ()), tuple(doc.get("audiences") or ()),
                   doc["granted_at"], doc.get("updated_at") or doc["granted_at"], _allowed(doc))


class Consents:
    """The consents people gave, and the authorization requests waiting for one."""

    def __init__(self, store: Store, *, pending_ttl: int, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._pending_ttl = pending_ttl
        self._clock = clock

    def __repr__(self) -> str:
        return "Consents()"

    # -- what was allowed ----------------------------------------------------------------------

    def get(self, subject: str, client_id: str) -> Consent | None:
        doc = self._store.get(CONSENTS, consent_key(subject, client_id))
        return None if doc is None else _consent(doc)

    def covers(self, subject: str, client_id: str, scopes: Iterable[str], audience: str) -> bool:
        """True if the person already allowed this app every scope and the audience asked for."""
        consent = self.get(subject, client_id)
        return consent is not None and consent.covers(scopes, audience)

    def grant(self, subject: str, client_id: str, scopes: Iterable[str], audience: str) -> Consent:
        """Record that the person allowed ``scopes`` and ``audience``, adding to what they allowed before."""
        key = consent_key(subject, client_id)
        for _ in range(GRANT_ATTEMPTS):
            now = int(self._clock())
            doc = self._store.get(CONSENTS, key)
            if doc is None:
                new = {"consent_key": key, "subject": subject, "client_id": client_id,
                       "scopes": sorted(set(scopes)), "audiences": [audience],
                       "allowed": sorted(allowed_pairs(scopes, audience)), "granted_at": now,
                       "updated_at": now, "version": 1}
                try:
                    self._store.insert(CONSENTS, new)
                    return _consent(new)
                except DuplicateKeyError:
                    continue  # another Allow of the same pair got there first: add to it
            merged = {"scopes": sorted(set(doc.get("scopes") or ()) | set(scopes)),
                      "audiences": sorted(set(doc.get("audiences") or ()) | {audience}),
                      "allowed": sorted(_allowed(doc) | allowed_pairs(scopes, audience)),
                      "updated_at": now, "version": (doc.get("version") or 0) + 1}
            if self._store.update(CONSENTS, {"consent_key": key, "version": doc.get("version")}, merged) == 1:
                return _consent({**doc, **merged})
        raise RuntimeError("the consent record kept changing; try again")

    def for_subject(self, subject: str) -> list[Consent]:
        return [_consent(d) for d in self._store.find(CONSENTS, {"subject": subject})]

    def withdraw(self, subject: str, client_id: str) -> bool:
        """Forget the person's consent to the app (their next login there asks again)."""
        return self._store.delete(CONSENTS, {"consent_key": consent_key(subject, client_id)}) > 0

    def forget_subject(self, subject: str) -> int:
        """Erasure: every consent of the person and every request waiting for one."""
        self.drop_waiting(subject)
        return self._store.delete(CONSENTS, {"subject": subject})

    def drop_waiting(self, subject: str) -> int:
        """Every request waiting for the person's answer (a sign-in's consent page not yet answered)."""
        return self._store.delete(PENDING_CONSENTS, {"subject": subject})

    # -- requests waiting for the person's answer ----------------------------------------------

    def park(self, request: Mapping[str, Any], subject: str) -> str:
        """Keep a signed-in person's authorization request until they answer; returns the id for their session."""
        now = int(self._clock())
        consent_id = new_secret_value()
        if secrets.randbelow(CLEANUP_ONE_IN) == 0:
            self._store.delete(PENDING_CONSENTS, {"expires_at": Lt(now)})
        self._store.insert(PENDING_CONSENTS, {
            **{name: request.get(name) for name in REQUEST_FIELDS},
            "redirect_uri_given": bool(request.get("redirect_uri_given")),
            "consent_hash": consent_reference(consent_id), "subject": subject,
            "auth_time": int(request.get("auth_time") or now),  # the upstream sign-in's (Authorizer.complete)
            "created_at": now, "expires_at": now + self._pending_ttl,
        })
        return consent_id

    def pending(self, consent_id: object) -> dict[str, Any] | None:
        """The waiting request with this id, unless it expired."""
        if not isinstance(consent_id, str) or not consent_id:
            return None
        doc = self._store.get(PENDING_CONSENTS, consent_reference(consent_id))
        if doc is None or doc["expires_at"] <= self._clock():
            return None
        return doc

    def take(self, consent_id: object) -> dict[str, Any] | None:
        """Remove and return the waiting request: exactly one answer counts."""
        doc = self.pending(consent_id)
        if doc is None or self._store.delete(PENDING_CONSENTS, {"consent_hash": doc["consent_hash"]}) != 1:
            return None
        return doc
