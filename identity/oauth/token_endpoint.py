"""The token endpoint (RFC 6749 §3.2): authorization_code, refresh_token and client_credentials.

``password`` and the implicit grant are not offered. Every refusal is an ``errors.ServiceError``
rendered in the RFC 6749 §5.2 JSON form.

A code is spent by its grant's creation and a refresh token by its rotation, and the client's retry of a
request that failed after that write is taken for a replay (a code's) or a reuse (a refresh token's), which
revokes the grant. So every step that reads or writes the store (the person's subject for the audience and
for the client, the access token's record if it needs one) runs before that write: once it has committed,
only signing remains, and no store failure can answer 503 for a token that was spent.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NoReturn

from ..errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from ..metrics import count_token_issued
from ..store import Store
from ..tokens import EncryptionKey, TokenMinter
from ..vault import Vault
from .audience_jwks import AudienceKeyUnavailable
from .audiences import AudienceRegistry
from .client_auth import authenticate, read_credentials
from .clients import AUTHORIZATION_CODE, CLIENT_CREDENTIALS, REFRESH_TOKEN, Client, ClientRegistry
from .grants import GrantAlreadyRevoked, Grants, RefreshTokenSuperseded, new_refresh_token
from .pkce import verifier_matches
from .records import AUTHORIZATION_CODES, REVOKED, ROTATED, token_hash
from .subjects import Subjects


def issued(grant_type: str, audience: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body``, once an access token for ``audience`` was issued by ``grant_type`` (counted for the metrics)."""
    count_token_issued(grant_type, audience)
    return body


class TokenEndpoint:
    """Authenticates the client and runs the requested grant."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        clients: ClientRegistry,
        audiences: AudienceRegistry,
        grants: Grants,
        minter: TokenMinter,
        subjects: Subjects,
        access_token_ttl: int,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._vault = vault
        self._clients = clients
        self._audiences = audiences
        self._grants = grants
        self._minter = minter
        self._subjects = subjects
        self._access_ttl = access_token_ttl
        self._clock = clock
        self._handlers: dict[str, Callable[[Client, Mapping[str, str]], dict[str, Any]]] = {
            AUTHORIZATION_CODE: self._authorization_code,
            REFRESH_TOKEN: self._refresh_token,
            CLIENT_CREDENTIALS: self._client_credentials,
        }

    def handle(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """The token response body for a valid request; raises ``ServiceError`` otherwise."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequest("grant_type is required")
        handler = self._handlers.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType(f"grant_type {grant_type[:40]!r} is not supported")
        client = authenticate(self._clients, read_credentials(authorization, form))
        if not client.allows_grant(grant_type):
            raise UnauthorizedClient("this client may not use this grant type")
        return handler(client, form)

    # -- shared pieces -----------------------------------------------------------------------

    def _encryption_key(self, audience: str) -> EncryptionKey:
        record = self._audiences.get(audience)
        if record is None:
            raise InvalidTarget("the audience is no longer registered")
        try:
            return self._audiences.encryption_key(record)
        except AudienceKeyUnavailable as exc:
            raise TemporarilyUnavailable("the audience's encryption key cannot be fetched right now") from exc

    def _check_resource(self, form: Mapping[str, str], audience: str) -> None:
        """RFC 8707 at the token endpoint: absent means the authorised audience; present must equal it."""
        resource = form.get("resource")
        if resource is not None and resource != audience:
            raise InvalidTarget("resource differs from the audience that was authorised")

    def _subject_is_active(self, subject: str) -> bool:
        identity = self._vault.find(subject)
        return identity is not None and identity.is_active

    def _response(
        self, *, access_token: str, scope: str, refresh_token: str | None = None, id_token: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": self._access_ttl}
        if scope:
            body["scope"] = scope
        if refresh_token:
            body["refresh_token"] = refresh_token
        if id_token:
            body["id_token"] = id_token
        return body

    # -- authorization_code ------------------------------------------------------------------

    def _authorization_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code")
        if not code:
            raise InvalidRequest("code is required")
        doc = self._store.get(AUTHORIZATION_CODES, token_hash(code))
        if doc is None or doc["client_id"] != client.client_id:
            raise InvalidGrant("the code is invalid")
        self._check_code_binding(doc, form)
        if doc.get("used"):  # spent by an earlier release, which marked codes
            self._code_replayed(doc)
        self._check_resource(form, doc["audience"])
        if not self._subject_is_active(doc["subject"]):
            raise InvalidGrant("the account is not active")
        key = self._encryption_key(doc["audience"])
        refresh = new_refresh_token() if client.allows_grant(REFRESH_TOKEN) else None
        # Every store step before the write that spends the code (module docstring)
        access = self._grants.issue_access_token(
            subject=doc["subject"], client_id=client.client_id, audience=doc["audience"], key=key,
            scope=doc["scope"], grant_id=doc["grant_id"])
        id_subject = (self._subjects.subject_for(doc["subject"], client=client)
                      if "openid" in doc["scope"].split() else None)
        # Creating the grant spends the code: its id was fixed when the code was issued and is unique, so of
        # two exchanges exactly one creates it. A non-durable write, like the tokens issued under it (grants
        # module docstring): a power cut that takes it back takes those tokens' grant with it.
        try:
            grant = self._grants.create(grant_id=doc["grant_id"], client_id=client.client_id,
                                        subject=doc["subject"], audience=doc["audience"], scope=doc["scope"],
                                        refresh_token=refresh)
        except GrantAlreadyRevoked:
            self._code_replayed(doc)
        id_token = None if id_subject is None else self._minter.id_token(
            subject=id_subject, client_id=client.client_id, nonce=doc.get("nonce"),
            auth_time=doc["auth_time"] or grant.created_at, now=self._clock())
        return issued(AUTHORIZATION_CODE, doc["audience"], self._response(
            access_token=access.token, scope=doc["scope"], refresh_token=refresh, id_token=id_token))

    def _code_replayed(self, doc: Mapping[str, Any]) -> NoReturn:
        """RFC 6749 §4.1.2: a code used twice revokes the tokens issued from it."""
        self._grants.revoke(doc["grant_id"], reason="authorization code replayed", placeholder={
            "client_id": doc["client_id"], "subject": doc["subject"], "audience": doc["audience"],
            "scope": doc["scope"]})
        raise InvalidGrant("the code was already used")

    def _check_code_binding(self, doc: Mapping[str, Any], form: Mapping[str, str]) -> None:
        """Expiry, redirect URI and PKCE: a code that fails them is not spent."""
        if doc["expires_at"] <= self._clock():
            raise InvalidGrant("the code has expired")
        redirect_uri = form.get("redirect_uri")
        if (doc["redirect_uri_given"] or redirect_uri is not None) and redirect_uri != doc["redirect_uri"]:
            raise InvalidGrant("redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier")
        if doc.get("code_challenge"):
            if not verifier or not verifier_matches(verifier, doc["code_challenge"]):
                raise InvalidGrant("code_verifier does not match the code_challenge")
        elif verifier is not None:
            raise InvalidGrant("code_verifier given but no code_challenge was sent (downgrade refused)")

    # -- refresh_token -----------------------------------------------------------------------

    def _refresh_token(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        value = form.get("refresh_token")
        if not value:
            raise InvalidRequest("refresh_token is required")
        presented = self._grants.find_refresh_token(value)
        if presented is None or presented.client_id != client.client_id:
            raise InvalidGrant("the refresh token is invalid")
        if presented.status == ROTATED:
            self._grants.revoke(presented.grant_id, reason="refresh token reused")  # RFC 9700 §4.14.2
            raise InvalidGrant("the refresh token was already used; the session is revoked")
        grant = presented.grant
        now = self._clock()
        if presented.status == REVOKED or grant is None or grant.revoked:
            raise InvalidGrant("the refresh token was revoked")
        if presented.expires_at <= now or presented.idle_expires_at <= now:
            raise InvalidGrant("the refresh token has expired")
        # RFC 6749 §6: the access token may narrow the scope; the new refresh token keeps the grant's
        scope = self._narrowed_scope(presented.scope, form.get("scope"))
        self._check_resource(form, presented.audience)
        if not self._subject_is_active(presented.subject):
            raise InvalidGrant("the account is not active")
        key = self._encryption_key(presented.audience)
        # Every store step before the rotation, which spends the presented token (module docstring)
        access = self._grants.issue_access_token(subject=grant.subject, client_id=client.client_id,
                                                 audience=grant.audience, key=key, scope=scope,
                                                 grant_id=grant.grant_id)
        try:  # the grant is checked again, atomically with the rotation: a revocation since the check wins
            refresh = self._grants.rotate_refresh_token(presented, grant)
        except GrantAlreadyRevoked:
            raise InvalidGrant("the refresh token was revoked") from None
        except RefreshTokenSuperseded:
            self._grants.revoke(presented.grant_id, reason="refresh token used concurrently")
            raise InvalidGrant("the refresh token was already used; the session is revoked") from None
        return issued(REFRESH_TOKEN, presented.audience, self._response(access_token=access.token, scope=scope,
                                                                        refresh_token=refresh))

    @staticmethod
    def _narrowed_scope(granted: str, requested: str | None) -> str:
        """RFC 6749 §6: the new scope may equal or narrow the granted one, never widen it."""
        if requested is None:
            return granted
        wanted = list(dict.fromkeys(requested.split()))
        if not set(wanted) <= set(granted.split()):
            raise InvalidScope("a refresh cannot widen the scope")
        return " ".join(wanted)

    # -- client_credentials ------------------------------------------------------------------

    def _client_credentials(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        if client.public:
            raise UnauthorizedClient("client_credentials is for confidential clients")
        scope_list = list(dict.fromkeys(form.get("scope", "").split()))
        if not client.allows_scopes(scope_list):
            raise InvalidScope("the requested scope is not allowed for this client")
        audience = form.get("resource")
        if audience is None:
            if len(client.audiences) != 1:
                raise InvalidTarget("name the audience with the resource parameter")
            audience = client.audiences[0]
        if audience not in client.audiences:
            raise InvalidTarget("this client may not obtain tokens for that resource")
        key = self._encryption_key(audience)
        scope = " ".join(scope_list)
        access = self._grants.issue_access_token(subject=client.client_id, client_id=client.client_id,
                                                 audience=audience, key=key, scope=scope, grant_id=None)
        return issued(CLIENT_CREDENTIALS, audience, self._response(access_token=access.token, scope=scope))
