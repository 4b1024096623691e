"""Grants (one per authorization: the refresh-token family) and the tokens issued under them.

Revoking a grant revokes its whole refresh-token family and makes introspection answer inactive
for every access token issued under it (RFC 7009 §2.1, RFC 9700 §4.14).

Rotation and revocation meet on the grant's document. The grant records the hash of its family's
newest refresh token; a refresh rotates with one conditional write, "this grant, not revoked, and
its newest token is the one presented → here is the next one". A revocation writes ``revoked_at``
on the same document, so whichever write comes first wins on both store backends: a revocation
that lands between the endpoint's checks and the rotation makes the rotation fail, and no token
is issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..store import DuplicateKeyError, Store
from ..tokens import AccessToken, EncryptionKey, TokenMinter
from .records import (
    ACTIVE,
    GRANTS,
    ISSUED_ACCESS_TOKENS,
    REFRESH_TOKENS,
    REVOKED,
    ROTATED,
    new_secret_value,
    token_hash,
)

if TYPE_CHECKING:
    from .subjects import Subjects


@dataclass(frozen=True)
class Grant:
    grant_id: str
    client_id: str
    subject: str
    audience: str
    scope: str
    created_at: int
    expires_at: int
    revoked_at: int | None
    refresh_hash: str | None = None  # None: no refresh token, or one issued before rotation was recorded here

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _grant(doc: dict[str, Any]) -> Grant:
    return Grant(doc["grant_id"], doc["client_id"], doc["subject"], doc["audience"], doc.get("scope") or "",
                 doc["created_at"], doc["expires_at"], doc.get("revoked_at"), doc.get("refresh_hash"))


class GrantAlreadyRevoked(Exception):
    """The grant was revoked (a replayed code, a client or an erasure got there first)."""


class RefreshTokenSuperseded(Exception):
    """The refresh token presented is no longer its family's newest: it was used already (reuse)."""


class Grants:
    """Creates, looks up and revokes grants; issues and records the tokens under them."""

    def __init__(
        self,
        store: Store,
        *,
        minter: TokenMinter,
        subjects: Subjects,
        refresh_ttl: int,
        refresh_idle_ttl: int,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._minter = minter
        self._subjects = subjects
        self._refresh_ttl = refresh_ttl
        self._refresh_idle_ttl = refresh_idle_ttl
        self._clock = clock

    # -- grants ------------------------------------------------------------------------------

    def create(self, *, grant_id: str, client_id: str, subject: str, audience: str, scope: str,
               refresh_token: str | None = None) -> Grant:
        """A new grant; ``refresh_token`` is its family's first (store it with ``record_refresh_token``).

        :raises GrantAlreadyRevoked: the grant id exists (a replayed code revoked it first).
        """
        now = int(self._clock())
        doc = {"grant_id": grant_id, "client_id": client_id, "subject": subject, "audience": audience,
               "scope": scope, "created_at": now, "expires_at": now + self._refresh_ttl}
        if refresh_token is not None:
            doc["refresh_hash"] = token_hash(refresh_token)
        try:
            self._store.insert(GRANTS, doc)
        except DuplicateKeyError as exc:
            raise GrantAlreadyRevoked() from exc
        return _grant(doc)

    def get(self, grant_id: str | None) -> Grant | None:
        if not grant_id:
            return None
        doc = self._store.get(GRANTS, grant_id)
        return None if doc is None else _grant(doc)

    def revoke(self, grant_id: str, *, reason: str, placeholder: dict[str, Any] | None = None) -> None:
        """Revoke the grant and its refresh tokens. ``placeholder`` creates it revoked if absent."""
        now = int(self._clock())
        if self._store.update(GRANTS, {"grant_id": grant_id}, {"revoked_at": now, "revoked_reason": reason}) == 0:
            if placeholder is not None:
                try:
                    self._store.insert(GRANTS, {**placeholder, "grant_id": grant_id, "created_at": now,
                                                "expires_at": now + self._refresh_ttl, "revoked_at": now,
                                                "revoked_reason": reason})
                except DuplicateKeyError:
                    self._store.update(GRANTS, {"grant_id": grant_id},
                                       {"revoked_at": now, "revoked_reason": reason})
        self._store.update(REFRESH_TOKENS, {"grant_id": grant_id}, {"status": REVOKED})

    def revoke_all_for_subject(self, subject: str, *, reason: str) -> int:
        """Revoke every grant of a person (erasure, restriction); returns how many."""
        grant_ids = [g["grant_id"] for g in self._store.find(GRANTS, {"subject": subject})]
        for grant_id in grant_ids:
            self.revoke(grant_id, reason=reason)
        return len(grant_ids)

    def revoke_for_client(self, subject: str, client_id: str, *, reason: str) -> int:
        """Revoke every grant a person gave one app ("remove access"); returns how many were live."""
        live = [g.grant_id for g in self.active_for_subject(subject) if g.client_id == client_id]
        for grant_id in live:
            self.revoke(grant_id, reason=reason)
        return len(live)

    def active_for_subject(self, subject: str) -> list[Grant]:
        now = self._clock()
        return [g for g in (_grant(d) for d in self._store.find(GRANTS, {"subject": subject}))
                if not g.revoked and g.expires_at > now]

    # -- tokens ------------------------------------------------------------------------------

    def issue_access_token(
        self, *, subject: str, client_id: str, audience: str, key: EncryptionKey, scope: str,
        grant_id: str | None,
    ) -> AccessToken:
        """Mint the nested token and record it (hash only) so introspection can recognise it.

        ``subject`` is the person's pseudonym (recorded); the token carries ``subject_for`` it, the
        ``sub`` that audience sees. A token without a grant is a client's own (client_credentials):
        its subject is the client id, as given.
        """
        sub = subject if grant_id is None else self._subjects.subject_for(subject, audience=audience)
        token = self._minter.access_token(subject=sub, client_id=client_id, audience=audience,
                                          encryption_key=key, scope=scope or None, now=self._clock())
        self._store.insert(ISSUED_ACCESS_TOKENS, {
            "token_hash": token_hash(token.token), "jti": token.jti, "grant_id": grant_id,
            "client_id": client_id, "subject": subject, "audience": audience, "scope": scope or None,
            "issued_at": token.issued_at, "expires_at": token.expires_at, "revoked": False,
        })
        return token

    def record_refresh_token(self, grant: Grant, value: str, *, scope: str) -> None:
        """Store ``value``, the grant's newest refresh token (from ``create`` or ``rotate_refresh_token``).

        Its absolute expiry is the grant's.
        """
        now = int(self._clock())
        self._store.insert(REFRESH_TOKENS, {
            "token_hash": token_hash(value), "grant_id": grant.grant_id, "client_id": grant.client_id,
            "subject": grant.subject, "audience": grant.audience, "scope": scope, "status": ACTIVE,
            "created_at": now, "expires_at": grant.expires_at,
            "idle_expires_at": min(grant.expires_at, now + self._refresh_idle_ttl),
        })

    def find_refresh_token(self, value: str) -> dict[str, Any] | None:
        return self._store.get(REFRESH_TOKENS, token_hash(value))

    def find_access_token(self, value: str) -> dict[str, Any] | None:
        return self._store.get(ISSUED_ACCESS_TOKENS, token_hash(value))

    def rotate_refresh_token(self, doc: dict[str, Any], grant: Grant) -> str:
        """The family's next refresh token, in exchange for ``doc``, its newest (RFC 9700 §4.14.2).

        One conditional write on the grant decides it: not revoked, and ``doc`` still the newest
        token. Of concurrent callers exactly one wins; a revocation written before it makes it fail.
        The new token is returned for ``record_refresh_token``; ``doc`` is marked rotated.

        :raises GrantAlreadyRevoked: the grant is revoked (or gone).
        :raises RefreshTokenSuperseded: ``doc`` was already exchanged (reuse or a concurrent use).
        """
        # A grant that predates ``refresh_hash`` has none: its one active token may rotate once, from None.
        expected = grant.refresh_hash
        if grant.revoked:
            raise GrantAlreadyRevoked()
        if expected is not None and expected != doc["token_hash"]:
            raise RefreshTokenSuperseded()
        now = int(self._clock())
        value = new_secret_value()
        won = self._store.update(
            GRANTS, {"grant_id": grant.grant_id, "revoked_at": None, "refresh_hash": expected},
            {"refresh_hash": token_hash(value), "refreshed_at": now},
        ) == 1
        if not won:
            current = self.get(grant.grant_id)
            if current is None or current.revoked:
                raise GrantAlreadyRevoked()
            raise RefreshTokenSuperseded()
        self._store.update(REFRESH_TOKENS, {"token_hash": doc["token_hash"], "status": ACTIVE},
                           {"status": ROTATED, "used_at": now})
        return value

    def revoke_access_token(self, doc: dict[str, Any]) -> None:
        self._store.update(ISSUED_ACCESS_TOKENS, {"token_hash": doc["token_hash"]}, {"revoked": True})
