"""OpenID Connect RP-Initiated Logout 1.0: checking a sign-out request, without Flask.

``end_session_endpoint`` (``/logout``, GET or POST) takes ``id_token_hint``, ``client_id``,
``post_logout_redirect_uri`` and ``state``. The checks, in order (§2, §3):

* no parameter twice, none over ``MAX_PARAM_LENGTH``;
* ``client_id``, when given, names a registered client;
* ``id_token_hint``, when given, is an ID token this service signed (RS256 with a key it publishes,
  ``typ`` JWT, our ``iss``); an expired one is accepted, as §2 allows; its ``aud`` is the client, and
  must equal ``client_id`` when both are given;
* ``post_logout_redirect_uri``, when given, needs the client (from either parameter) and must equal one
  of its registered values exactly (``scripts/clients.py add --post-logout-redirect-uri``).

A request that fails any check gets a page, never a redirect (``LogoutRefused``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping

import jwt
from jwt import exceptions as jwt_errors

from ..errors import PageError
from ..keys import Keyring
from .clients import Client, ClientRegistry

MAX_PARAM_LENGTH = 2048
MAX_HINT_LENGTH = 8 * 1024
PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales")
ID_TOKEN_TYPE = "JWT"

INVALID = ("The sign-out request is not valid: it names an unknown app, or its token was not issued by this "
           "service for that app.")
UNREGISTERED = ("The app asked to send you back to an address it has not registered, so this service will not "
                "send you there. You can still sign out here.")


class LogoutRefused(PageError):
    """The request cannot be followed; ``message`` is for the person (a catalogue text), ``reason`` for the log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LogoutRequest:
    client: Client | None
    redirect_uri: str | None  # verified: exactly one of the client's registered values
    state: str | None
    hint_subject: str | None  # the hint's ``sub``, when a hint of ours was given

    def redirect_parameters(self) -> dict[str, str | None]:
        return {"state": self.state}


def verify_id_token_hint(hint: str, keyring: Keyring, *, issuer: str) -> dict[str, Any]:
    """The claims of an ID token this service issued, expired or not; ``LogoutRefused`` otherwise."""
    if not isinstance(hint, str) or not 0 < len(hint) <= MAX_HINT_LENGTH:
        raise LogoutRefused(INVALID, "id_token_hint_malformed")
    try:
        header = jwt.get_unverified_header(hint)
    except jwt_errors.PyJWTError:
        raise LogoutRefused(INVALID, "id_token_hint_malformed") from None
    if header.get("alg") != "RS256" or header.get("typ") != ID_TOKEN_TYPE or "crit" in header:
        raise LogoutRefused(INVALID, "id_token_hint_not_an_id_token")
    key = next((k for k in keyring.signing_keys() if k.kid == header.get("kid")), None)
    if key is None:
        raise LogoutRefused(INVALID, "id_token_hint_unknown_key")
    try:
        claims = jwt.decode(hint, key.public_key, algorithms=["RS256"], issuer=issuer,
                            options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                     "require": ["iss", "sub", "aud", "iat", "exp"]})
    except jwt_errors.PyJWTError:
        raise LogoutRefused(INVALID, "id_token_hint_invalid") from None
    audience = claims.get("aud")
    if isinstance(audience, list) and len(audience) == 1:
        audience = audience[0]
    if not isinstance(audience, str) or not isinstance(claims.get("sub"), str):
        raise LogoutRefused(INVALID, "id_token_hint_invalid")
    return {**claims, "aud": audience}


def validate_logout(params: Mapping[str, str], duplicated: Collection[str], *, clients: ClientRegistry,
                    keyring: Keyring, issuer: str) -> LogoutRequest:
    """Check a sign-out request (see the module docstring); raises ``LogoutRefused``."""
    if any(p in PARAMS for p in duplicated):
        raise LogoutRefused(INVALID, "repeated_parameter")
    if any(len(params.get(p) or "") > (MAX_HINT_LENGTH if p == "id_token_hint" else MAX_PARAM_LENGTH) for p in PARAMS):
        raise LogoutRefused(INVALID, "parameter_too_long")
    client: Client | None = None
    if params.get("client_id"):
        client = clients.get(params["client_id"])
        if client is None:
            raise LogoutRefused(INVALID, "unknown_client")
    subject = None
    if params.get("id_token_hint"):
        claims = verify_id_token_hint(params["id_token_hint"], keyring, issuer=issuer)
        if client is not None and claims["aud"] != client.client_id:
            raise LogoutRefused(INVALID, "id_token_hint_for_another_client")
        client = client or clients.get(claims["aud"])
        subject = claims["sub"]
    redirect_uri = params.get("post_logout_redirect_uri") or None
    if redirect_uri is not None and (client is None or not client.allows_post_logout_redirect(redirect_uri)):
        raise LogoutRefused(UNREGISTERED, "unregistered_post_logout_redirect_uri")
    return LogoutRequest(client=client, redirect_uri=redirect_uri, state=params.get("state") or None,
                         hint_subject=subject)
