"""The development IdP's authorization request checks (OpenID Connect Core §3.1.2), without Flask.

The client and its redirect URI are checked first: a failure there is an error page, never a
redirect (no open redirect). Everything else is an OAuth error redirect to the registered URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from werkzeug.datastructures import MultiDict

from ..errors import PageError as ServicePageError
from ..errors import ServiceError
from ..oauth.pkce import challenge_problem
from .config import DevIdPConfig

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+$")
MAX_PARAM_LENGTH = 2048
MAX_EMAIL_LENGTH = 254
FORWARDED = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
             "code_challenge_method")


class PageError(ServicePageError):
    """Cannot redirect: unknown client or unregistered redirect URI."""


class RedirectError(ServiceError):
    """An OAuth error for the registered redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error


@dataclass(frozen=True)
class LoginRequest:
    client_id: str
    redirect_uri: str
    state: str | None
    nonce: str | None
    code_challenge: str
    scope: str

    def form_fields(self) -> dict[str, str]:
        """The request as hidden form fields, re-checked when the form comes back."""
        fields = {"client_id": self.client_id, "redirect_uri": self.redirect_uri, "response_type": "code",
                  "scope": self.scope, "code_challenge": self.code_challenge, "code_challenge_method": "S256"}
        if self.state is not None:
            fields["state"] = self.state
        if self.nonce is not None:
            fields["nonce"] = self.nonce
        return fields


def parse_login_request(params: MultiDict[str, str], config: DevIdPConfig) -> LoginRequest:
    """Check an authorization request; raise ``PageError`` or ``RedirectError``."""
    repeated = {k for k in params if len(params.getlist(k)) > 1}
    if "client_id" in repeated or params.get("client_id") != config.client_id:
        raise PageError("The application that sent you here is not registered with this identity provider.")
    redirect_uri = params.get("redirect_uri")
    if "redirect_uri" in repeated or redirect_uri not in config.redirect_uris:
        raise PageError("The redirect URI is not registered for this application.")
    if repeated & set(FORWARDED):
        raise RedirectError("invalid_request", "a parameter was given more than once")
    if any(len(v) > MAX_PARAM_LENGTH for v in params.values()):
        raise RedirectError("invalid_request", "a parameter is too long")
    if params.get("response_type") != "code":
        raise RedirectError("unsupported_response_type", "only response_type=code is supported")
    scope = params.get("scope", "")
    if "openid" not in scope.split():
        raise RedirectError("invalid_scope", "the openid scope is required")
    challenge = params.get("code_challenge")
    if challenge is None or challenge_problem(challenge, params.get("code_challenge_method")):
        raise RedirectError("invalid_request", "PKCE with code_challenge_method=S256 is required")
    return LoginRequest(client_id=config.client_id, redirect_uri=redirect_uri, state=params.get("state"),
                        nonce=params.get("nonce"), code_challenge=params["code_challenge"], scope=scope)


def email_problem(email: str) -> str | None:
    """Why the typed address cannot be used (the message never repeats it), or None."""
    if not email:
        return "Enter an e-mail address."
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL_PATTERN.fullmatch(email):
        return "Enter an e-mail address such as name@example.org."
    return None
