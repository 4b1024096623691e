"""Grants (one per authorization: the refresh-token family) and the tokens issued under them.

Revoking a grant revokes its whole refresh-token family and makes introspection answer inactive
for every access token issued under it (RFC 7009 §2.1, RFC 9700 §4.14).

The grant's document is the family. A refresh token is ``<family id>.<secret>``, both 256 random bits
(opaque to clients); the family id is the same for every token of the grant, and the grant records
only hashes: of the family id (``refresh_family``, a unique index) and of its newest token
(``refresh_hash``), with when that was issued (``refreshed_at``, else ``created_at``). A presented
token is found by its family id's hash; it is the newest if its own hash is the recorded one, and any
other token naming the family is an earlier one: a reuse, which revokes the family. The family id is
nowhere in clear but in the family's tokens, so only someone who held one can name it (a copy of the
store cannot). No record per refresh token is written. Refresh tokens from before this format (no
``.``) are still found in ``refresh_tokens`` and rotate into it.

Rotation and revocation meet on the grant's document. A refresh rotates with one conditional write,
"this grant, not revoked, and its newest token is the one presented → here is the next one". A
revocation writes ``revoked_at`` on the same document, so whichever write comes first wins on both
store backends: a revocation that lands between the endpoint's checks and the rotation makes the
rotation fail, and no token is issued.

Durability (``identity.store.base``): revocations are durable writes. Issuing is not: a grant's
creation, a rotation and an access-token record are committed without a sync of their own and
become durable with the next durable write (or the store's own flush). What a power cut can take
back is a tail of them, and each loss fails closed: a lost grant leaves its refresh token unknown,
a lost rotation leaves the client holding a token that no longer matches its grant (its next use
revokes the family), a lost access-token record makes introspection answer inactive. None of them
waits for a disk flush, so the token endpoint pays no fsync per token.

An access token needs no write at all: its header carries a sealed reference (``identity.token_reference``)
that tells the service its ``jti``, expiry, grant or client and audience, and scope. Revoking one writes
its ``jti`` to ``revoked_access_tokens`` (durable), where it stays until the token expires. Only a token
whose header would grow too long for the reference keeps a record, found by the token's hash.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..store import DuplicateKeyError, Store, find_one
from ..store.base import Where
from ..token_reference import reference_of
from ..tokens import AccessToken, EncryptionKey, TokenMinter
from .records import (
    ACTIVE,
    AUTHORIZATION_CODES,
    GRANTS,
    ISSUED_ACCESS_TOKENS,
    REFRESH_TOKENS,
    REVOKED,
    REVOKED_ACCESS_TOKENS,
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
    refreshed_at: int | None = None  # when the newest refresh token was issued by a rotation

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _grant(doc: dict[str, Any]) -> Grant:
    return Grant(doc["grant_id"], doc["client_id"], doc["subject"], doc["audience"], doc.get("scope") or "",
                 doc["created_at"], doc["expires_at"], doc.get("revoked_at"), doc.get("refresh_hash"),
                 doc.get("refreshed_at"))


REFRESH_SEPARATOR = "."


def new_refresh_token(family: str | None = None) -> str:
    """A fresh refresh token of ``family`` (the family id of a token of it), or of a new family."""
    return f"{family or new_secret_value()}{REFRESH_SEPARATOR}{new_secret_value()}"


def family_of(refresh_token: str) -> str | None:
    """The family id a refresh token starts with; None for a token from before the family format."""
    family, separator, _ = refresh_token.partition(REFRESH_SEPARATOR)
    return family if separator else None


@dataclass(frozen=True)
class PresentedRefreshToken:
    """A refresh token as presented, resolved to its grant: the family's newest (``ACTIVE``), an
    earlier one (``ROTATED``: a reuse), or one of a revoked family (``REVOKED``)."""

    token_hash: str
    family: str | None  # the family id, as presented; None: a token from before the family format
    grant_id: str
    grant: Grant | None  # None: a token from before the family format whose grant is gone
    client_id: str
    subject: str
    audience: str
    scope: str
    status: str
    issued_at: int
    expires_at: int
    idle_expires_at: int


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
        """A new grant; ``refresh_token`` (``new_refresh_token()``) is its family's first.

        Not a durable write (module docstring): lost in a power cut, the refresh token is unknown.

        :raises GrantAlreadyRevoked: the grant id exists: its code was exchanged already, or a replay of it
            revoked the grant first.
        """
        now = int(self._clock())
        doc = {"grant_id": grant_id, "client_id": client_id, "subject": subject, "audience": audience,
               "scope": scope, "created_at": now, "expires_at": now + self._refresh_ttl}
        if refresh_token is not None:
            family = family_of(refresh_token)
            if family is None:
                raise ValueError("a new grant's refresh token is in the family format (new_refresh_token)")
            doc["refresh_hash"], doc["refresh_family"] = token_hash(refresh_token), token_hash(family)
        try:
            self._store.insert(GRANTS, doc, durable=False)
        except DuplicateKeyError as exc:
            raise GrantAlreadyRevoked() from exc
        return _grant(doc)

    def get(self, grant_id: str | None) -> Grant | None:
        if not grant_id:
            return None
        doc = self._store.get(GRANTS, grant_id)
        return None if doc is None else _grant(doc)

    def revoke(self, grant_id: str, *, reason: str, placeholder: dict[str, Any] | None = None) -> bool:
        """Revoke the grant (its refresh-token family, its access tokens at introspection): a durable
        write. ``placeholder`` creates it revoked if absent. A grant revoked already keeps the time and
        the reason of its first revocation (a client's later /revoke does not hide "refresh token reused").
        Returns whether a live grant was revoked now."""
        now = int(self._clock())
        revocation = {"revoked_at": now, "revoked_reason": reason}
        live = {"grant_id": grant_id, "revoked_at": None}
        if self._store.update(GRANTS, live, revocation, durable=True) == 1:
            return True
        if placeholder is not None:
            try:
                self._store.insert(GRANTS, {**placeholder, "grant_id": grant_id, "created_at": now,
                                            "expires_at": now + self._refresh_ttl, **revocation}, durable=True)
            except DuplicateKeyError:  # created meanwhile (or revoked already: then this changes nothing)
                return self._store.update(GRANTS, live, revocation, durable=True) == 1
        return False

    def _end_codes(self, where: Where, *, reason: str) -> int:
        """Drop the authorization codes matching ``where``, each one's grant revoked first (created revoked if
        it does not exist yet): an exchange already past its checks then creates nothing live, as for a
        replayed code. Runs before the grants it concerns are listed for revocation. Returns how many live
        grants it revoked (codes spent already)."""
        revoked = sum(self.revoke(code["grant_id"], reason=reason, placeholder={
            "client_id": code["client_id"], "subject": code["subject"], "audience": code["audience"],
            "scope": code["scope"]}) for code in list(self._store.find(AUTHORIZATION_CODES, where)))
        self._store.delete(AUTHORIZATION_CODES, where)
        return revoked

    def revoke_all_for_subject(self, subject: str, *, reason: str) -> int:
        """Revoke every grant of a person (erasure, closure, an e-mail change), those their outstanding codes
        would create included (``_end_codes``); returns how many existing grants."""
        self._end_codes({"subject": subject}, reason=reason)
        grant_ids = [g["grant_id"] for g in self._store.find(GRANTS, {"subject": subject})]
        for grant_id in grant_ids:
            self.revoke(grant_id, reason=reason)
        return len(grant_ids)

    def revoke_all_for_client(self, client_id: str, *, reason: str) -> int:
        """Revoke every live grant of an app (the app removed): its refresh tokens and the access tokens
        of its people stop at once. One durable write over many documents; returns how many."""
        return self._store.update(GRANTS, {"client_id": client_id, "revoked_at": None},
                                  {"revoked_at": int(self._clock()), "revoked_reason": reason}, durable=True)

    def revoke_for_client(self, subject: str, client_id: str, *, reason: str) -> int:
        """Revoke every grant a person gave one app ("remove access"), those its outstanding codes would create
        included (``_end_codes``); returns how many existing grants were live."""
        revoked = self._end_codes({"subject": subject, "client_id": client_id}, reason=reason)
        live = [g.grant_id for g in self.active_for_subject(subject) if g.client_id == client_id]
        for grant_id in live:
            self.revoke(grant_id, reason=reason)
        return revoked + len(live)

    def active_for_subject(self, subject: str) -> list[Grant]:
        now = self._clock()
        return [g for g in (_grant(d) for d in self._store.find(GRANTS, {"subject": subject}))
                if not g.revoked and g.expires_at > now]

    # -- tokens ------------------------------------------------------------------------------

    def issue_access_token(
        self, *, subject: str, client_id: str, audience: str, key: EncryptionKey, scope: str,
        grant_id: str | None,
    ) -> AccessToken:
        """Mint the nested token, sealing into it what introspection and revocation need to know of it.

        ``subject`` is the person's pseudonym (never sealed: a token under a grant is resolved through the
        grant); the token carries ``subject_for`` it, the ``sub`` that audience sees. A token without a
        grant is a client's own (client_credentials): its subject is the client id, as given. A token
        whose header cannot carry the reference is recorded (hash only) instead.
        """
        sub = subject if grant_id is None else self._subjects.subject_for(subject, audience=audience)
        reference: dict[str, Any] = {"g": grant_id} if grant_id else {"c": client_id, "a": audience}
        if scope:
            reference["s"] = scope
        token = self._minter.access_token(subject=sub, client_id=client_id, audience=audience,
                                          encryption_key=key, scope=scope or None, now=self._clock(),
                                          reference=reference)
        if not token.referenced:
            self._store.insert(ISSUED_ACCESS_TOKENS, {
                "token_hash": token_hash(token.token), "jti": token.jti, "grant_id": grant_id,
                "client_id": client_id, "subject": subject, "audience": audience, "scope": scope or None,
                "issued_at": token.issued_at, "expires_at": token.expires_at, "revoked": False,
            })
        return token

    def find_refresh_token(self, value: str) -> PresentedRefreshToken | None:
        """The refresh token ``value`` resolved to its grant, or None if it names no family we know."""
        presented_hash = token_hash(value)
        family = family_of(value)
        if family is None:
            return self._find_legacy_refresh_token(presented_hash)
        doc = find_one(self._store, GRANTS, {"refresh_family": token_hash(family)})
        grant = None if doc is None else _grant(doc)
        if grant is None or grant.refresh_hash is None:
            return None
        if grant.revoked:
            status = REVOKED
        elif hmac.compare_digest(grant.refresh_hash, presented_hash):
            status = ACTIVE
        else:
            status = ROTATED
        issued_at = grant.refreshed_at or grant.created_at
        return PresentedRefreshToken(
            presented_hash, family, grant.grant_id, grant, grant.client_id, grant.subject, grant.audience,
            grant.scope, status, issued_at, grant.expires_at, min(grant.expires_at, issued_at + self._refresh_idle_ttl))

    def _find_legacy_refresh_token(self, presented_hash: str) -> PresentedRefreshToken | None:
        """A token from before the family format, from its own record (no new ones are written)."""
        doc = self._store.get(REFRESH_TOKENS, presented_hash)
        if doc is None:
            return None
        grant = self.get(doc["grant_id"])
        status = doc["status"]
        if grant is None or grant.revoked:
            status = REVOKED
        elif status == ACTIVE and grant.refresh_hash is not None and grant.refresh_hash != presented_hash:
            status = ROTATED  # rotated since (this release no longer marks the record)
        return PresentedRefreshToken(
            presented_hash, None, doc["grant_id"], grant, doc["client_id"], doc["subject"], doc["audience"],
            doc["scope"] or "", status, doc["created_at"], doc["expires_at"], doc["idle_expires_at"])

    def find_access_token(self, value: str) -> dict[str, Any] | None:
        """What the service issued ``value`` as, or None: its sealed reference, else its record.

        The same fields either way: ``jti``, ``grant_id`` (None for a client's own token), ``client_id``,
        ``subject`` (the pseudonym, or the client id), ``audience``, ``scope``, ``issued_at``,
        ``expires_at`` and ``revoked``. A reference under a grant that is gone finds nothing.
        """
        reference = reference_of(value)
        if reference is None:
            return self._recorded_access_token(value)
        fields = self._minter.references.open(reference)
        if fields is None:
            return None
        try:
            doc = self._referenced_access_token(fields)
        except (KeyError, TypeError):
            return None  # sealed by us, so never: a malformed reference is simply not ours
        if doc is not None:
            doc["revoked"] = self._store.get(REVOKED_ACCESS_TOKENS, doc["jti"]) is not None
        return doc

    def _referenced_access_token(self, fields: dict[str, Any]) -> dict[str, Any] | None:
        doc: dict[str, Any] = {"jti": str(fields["j"]), "issued_at": int(fields["i"]),
                               "expires_at": int(fields["e"]), "scope": fields.get("s")}
        grant_id = fields.get("g")
        if grant_id:
            grant = self.get(str(grant_id))
            if grant is None:
                return None
            doc.update(grant_id=grant.grant_id, client_id=grant.client_id, subject=grant.subject,
                       audience=grant.audience)
        else:
            client_id = str(fields["c"])
            doc.update(grant_id=None, client_id=client_id, subject=client_id, audience=str(fields["a"]))
        return doc

    def _recorded_access_token(self, value: str) -> dict[str, Any] | None:
        doc = self._store.get(ISSUED_ACCESS_TOKENS, token_hash(value))
        if doc is not None and not doc["revoked"]:
            doc["revoked"] = self._store.get(REVOKED_ACCESS_TOKENS, doc["jti"]) is not None
        return doc

    def rotate_refresh_token(self, presented: PresentedRefreshToken, grant: Grant) -> str:
        """The family's next refresh token, in exchange for ``presented``, its newest (RFC 9700 §4.14.2).

        One conditional write on the grant decides it: not revoked, and ``presented`` still the newest
        token. Of concurrent callers exactly one wins; a revocation written before it makes it fail.
        Not a durable write (module docstring): lost in a power cut, the new token's next use is a reuse.

        :raises GrantAlreadyRevoked: the grant is revoked (or gone).
        :raises RefreshTokenSuperseded: ``presented`` was already exchanged (reuse or a concurrent use).
        """
        # A grant that predates ``refresh_hash`` has none: its one active token may rotate once, from None.
        expected = grant.refresh_hash
        if grant.revoked:
            raise GrantAlreadyRevoked()
        if expected is not None and not hmac.compare_digest(expected, presented.token_hash):
            raise RefreshTokenSuperseded()
        family = presented.family or new_secret_value()  # a token from before the format starts a family
        value = new_refresh_token(family)
        changes: dict[str, Any] = {"refresh_hash": token_hash(value), "refreshed_at": int(self._clock())}
        if presented.family is None:
            changes["refresh_family"] = token_hash(family)
        won = self._store.update(
            GRANTS, {"grant_id": grant.grant_id, "revoked_at": None, "refresh_hash": expected}, changes,
            durable=False) == 1
        if not won:
            current = self.get(grant.grant_id)
            if current is None or current.revoked:
                raise GrantAlreadyRevoked()
            raise RefreshTokenSuperseded()
        return value

    def revoke_access_token(self, doc: dict[str, Any]) -> None:
        """Revoke an issued access token (``find_access_token``): its ``jti``, until it expires. Durable."""
        if doc["revoked"]:
            return
        try:
            self._store.insert(REVOKED_ACCESS_TOKENS, {"jti": doc["jti"], "expires_at": doc["expires_at"]},
                               durable=True)
        except DuplicateKeyError:
            pass  # revoked a moment ago by a concurrent request
