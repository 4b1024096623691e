"""Revocation (RFC 7009) and introspection (RFC 7662).

The service cannot decrypt its own access tokens (they are encrypted to their audience), so it
recognises them by the sealed reference in their header (``identity.token_reference``), or, for the few
that could not carry one, by the SHA-256 of the token recorded at issuance: who it was issued to, for
which audience, scope and grant, until when (``Grants.find_access_token``). Introspection needs exactly
that to answer, and the caller's entitlement to it (RFC 7662 §4): an access token is described to
the client it was issued to or to its audience's resource server, a client registered to introspect that
audience (``Client.introspects``). Being allowed to *request* tokens for an audience is not enough: every
app that calls an API is, and one app must not learn the subject of another app's people. A refresh token names its
family, whose grant holds what there is to say about it (``grants`` module docstring); it is described
only to its client, and only while it is its family's newest.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from ..errors import InvalidClient, InvalidRequest
from ..vault import Vault
from .client_auth import authenticate, read_credentials
from .clients import Client, ClientRegistry
from .grants import Grants, PresentedRefreshToken
from .records import ACTIVE
from .subjects import Subjects

log = logging.getLogger(__name__)

INACTIVE: dict[str, Any] = {"active": False}
MAX_TOKEN_LENGTH = 8192
ACCESS_TOKEN, REFRESH_TOKEN = "access_token", "refresh_token"


def _search_order(hint: str | None) -> tuple[str, str]:
    """RFC 7662 §2.1: ``token_type_hint`` says where to look first; the other type is searched too.
    An unknown hint is ignored."""
    return (ACCESS_TOKEN, REFRESH_TOKEN) if hint == ACCESS_TOKEN else (REFRESH_TOKEN, ACCESS_TOKEN)


class TokenStatus:
    """Answers revocation and introspection requests."""

    def __init__(
        self, *, vault: Vault, clients: ClientRegistry, grants: Grants, subjects: Subjects, issuer: str,
        clock: Callable[[], float],
    ) -> None:
        self._vault = vault
        self._subjects = subjects
        self._clients = clients
        self._grants = grants
        self._issuer = issuer
        self._clock = clock

    def _token_param(self, form: Mapping[str, str]) -> str:
        token = form.get("token")
        if not token:
            raise InvalidRequest("token is required")
        return token

    # -- revocation --------------------------------------------------------------------------

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """Revoke a token of the calling client. Unknown tokens and other clients' tokens are ignored
        (RFC 7009 §2.2: the answer is 200 either way, so it reveals nothing)."""
        client = authenticate(self._clients, read_credentials(authorization, form))
        token = self._token_param(form)
        if len(token) > MAX_TOKEN_LENGTH:
            return
        refresh = self._grants.find_refresh_token(token)
        if refresh is not None:  # any token of the family, the newest or an earlier one: the whole family
            if refresh.client_id == client.client_id:
                self._grants.revoke(refresh.grant_id, reason="revoked by the client")
            return
        access = self._grants.find_access_token(token)
        if access is not None and access["client_id"] == client.client_id:
            self._grants.revoke_access_token(access)

    # -- introspection -----------------------------------------------------------------------

    def introspect(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """RFC 7662 for an authenticated confidential client, scoped as §4 asks: an access token is
        described to the client it was issued to or to its audience's resource server; a refresh token
        only to the client it was issued to. Anything else is ``{"active": false}``."""
        caller = authenticate(self._clients, read_credentials(authorization, form))
        if caller.public:
            raise InvalidClient("introspection needs a confidential client")
        token = self._token_param(form)
        if len(token) > MAX_TOKEN_LENGTH:
            return INACTIVE
        for kind in _search_order(form.get("token_type_hint")):
            if kind == REFRESH_TOKEN:
                presented = self._grants.find_refresh_token(token)
                if presented is not None:
                    return self._describe_refresh(caller, presented)
            else:
                access = self._grants.find_access_token(token)
                if access is not None:
                    return self._describe_access(caller, access)
        return INACTIVE

    def _live(self, doc: Mapping[str, Any]) -> bool:
        if doc["expires_at"] <= self._clock():
            return False
        if self._clients.get(doc["client_id"]) is None:  # the app was removed: none of its tokens is live
            return False
        if doc.get("grant_id"):
            grant = self._grants.get(doc["grant_id"])
            if grant is None or grant.revoked:
                return False
            return self._subject_is_active(doc["subject"])
        return True  # client_credentials: the client itself, checked above

    def _subject_is_active(self, subject: str) -> bool:
        identity = self._vault.find(subject)
        return identity is not None and identity.is_active

    def _describe_access(self, caller: Client, doc: Mapping[str, Any]) -> dict[str, Any]:
        own = doc["client_id"] == caller.client_id
        if not (own or doc["audience"] in caller.introspects):
            if doc["audience"] in caller.audiences:  # the rule before resource servers were registered
                log.warning("client %s introspected another client's token for %s without being registered "
                            "to introspect it: answered inactive (scripts/clients.py update %s --introspects "
                            "AUDIENCE makes it that audience's resource server)",
                            caller.client_id, doc["audience"], caller.client_id)
            return INACTIVE
        if doc["revoked"] or not self._live(doc):
            return INACTIVE
        if not doc.get("grant_id"):
            sub = doc["subject"]  # a client's own token: its client id
        elif own:  # the app itself: the subject of its ID tokens, never the audience's (apps could join on it)
            sub = self._subjects.subject_for(doc["subject"], client=caller)
        else:  # the audience's resource server: the subject its tokens carry
            sub = self._subjects.subject_for(doc["subject"], audience=doc["audience"])
        return self._claims(doc, sub, token_type=ACCESS_TOKEN, iat=doc["issued_at"])

    def _describe_refresh(self, caller: Client, presented: PresentedRefreshToken) -> dict[str, Any]:
        if presented.client_id != caller.client_id:
            return INACTIVE
        now = self._clock()
        grant = presented.grant
        if (presented.status != ACTIVE or grant is None or grant.revoked or presented.expires_at <= now
                or presented.idle_expires_at <= now or not self._subject_is_active(presented.subject)):
            return INACTIVE
        # only its own client sees a refresh token: the subject of that client's ID tokens
        return self._claims({"client_id": presented.client_id, "subject": presented.subject,
                             "audience": presented.audience, "expires_at": presented.expires_at,
                             "scope": presented.scope},
                            self._subjects.subject_for(presented.subject, client=caller), token_type=REFRESH_TOKEN,
                            iat=presented.issued_at)

    def _claims(self, doc: Mapping[str, Any], sub: str, *, token_type: str, iat: int) -> dict[str, Any]:
        """``sub`` as the token's receiver sees it (``Subjects.subject_for``), never the pseudonym of a
        pairwise audience."""
        body: dict[str, Any] = {
            "active": True, "token_type": token_type, "client_id": doc["client_id"], "sub": sub,
            "aud": doc["audience"], "iss": self._issuer, "exp": doc["expires_at"], "iat": iat,
        }
        if doc.get("scope"):
            body["scope"] = doc["scope"]
        if doc.get("jti"):
            body["jti"] = doc["jti"]
        return body
