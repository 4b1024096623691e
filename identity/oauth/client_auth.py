"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

Confidential clients use ``client_secret_basic`` or ``client_secret_post``; public clients send only
``client_id`` (``none``). Using two methods at once is refused (RFC 6749 §2.3).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import unquote

from ..errors import InvalidClient, InvalidRequest
from ..logs import note_client_id
from .clients import Client, ClientRegistry

MAX_CREDENTIAL_LENGTH = 512


@dataclass(frozen=True)
class PresentedCredentials:
    client_id: str
    secret: str | None
    method: str


def read_credentials(authorization: str | None, form: Mapping[str, str]) -> PresentedCredentials:
    """Parse the client's credentials from the Authorization header or the form body."""
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClient("client authentication must use HTTP Basic or the request body")
        if form_secret is not None:
            raise InvalidRequest("use one client authentication method, not several")
        client_id, secret = _parse_basic(value.strip())
        if form_id is not None and form_id != client_id:
            raise InvalidRequest("client_id in the body differs from the authenticated client")
        return PresentedCredentials(client_id, secret, "client_secret_basic")
    if not form_id:
        raise InvalidClient("client authentication is required")
    if len(form_id) > MAX_CREDENTIAL_LENGTH or (form_secret and len(form_secret) > MAX_CREDENTIAL_LENGTH):
        raise InvalidClient("client authentication failed")
    if form_secret is not None:
        return PresentedCredentials(form_id, form_secret, "client_secret_post")
    return PresentedCredentials(form_id, None, "none")


def _parse_basic(value: str) -> tuple[str, str]:
    if len(value) > 2 * MAX_CREDENTIAL_LENGTH:
        raise InvalidClient("client authentication failed")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidClient("malformed HTTP Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed HTTP Basic credentials")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def authenticate(registry: ClientRegistry, presented: PresentedCredentials) -> Client:
    """The authenticated client; ``InvalidClient`` (401) for unknown clients or wrong secrets."""
    client = registry.get(presented.client_id)
    if client is None:
        raise InvalidClient("client authentication failed")
    if client.public:
        if presented.secret is not None:
            raise InvalidClient("client authentication failed")
        note_client_id(client.client_id)  # for this request's log line (identity.web.telemetry)
        return client
    if presented.secret is None or not registry.secret_matches(client, presented.secret):
        raise InvalidClient("client authentication failed")
    note_client_id(client.client_id)
    return client
