"""RFC 7662 token introspection, for calls that must see a revocation at once.

The resource server authenticates as a confidential client (``client_secret_basic``, RFC 6749
§2.3.1) and asks the issuer whether a token is still active. Results are never cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

from .claims import AccessToken
from .errors import ConfigurationError, IssuerUnavailable, TokenInactive
from .http import Fetcher, require_safe_url, unavailable_on_failure

#: Members of an introspection answer that must agree with the locally verified token.
CROSS_CHECKED = ("sub", "client_id", "jti", "iss")


@dataclass(frozen=True)
class ClientCredentials:
    """The resource server's own client registration at the issuer; ``repr`` hides the secret."""

    client_id: str
    client_secret: str = field(repr=False)

    def basic_auth(self) -> tuple[str, str]:
        """RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding."""
        return quote(self.client_id, safe=""), quote(self.client_secret, safe="")


class IntrospectionClient:
    """POSTs ``token`` to the introspection endpoint; ``TokenInactive`` unless ``active`` is true."""

    def __init__(
        self,
        credentials: ClientCredentials,
        fetcher: Fetcher,
        *,
        endpoint: str | None = None,
        endpoint_from: Callable[[], str | None] | None = None,
    ) -> None:
        if endpoint is None and endpoint_from is None:
            raise ConfigurationError("introspection needs an endpoint (or discovery)")
        self._credentials = credentials
        self._fetcher = fetcher
        self._endpoint = require_safe_url(endpoint, "introspection endpoint") if endpoint else None
        self._endpoint_from = endpoint_from

    def endpoint(self) -> str:
        if self._endpoint is not None:
            return self._endpoint
        assert self._endpoint_from is not None
        endpoint = self._endpoint_from()
        if not endpoint:  # the issuer's answer, not our settings: no ConfigurationError after construction
            raise IssuerUnavailable("the issuer's metadata advertises no introspection_endpoint")
        return endpoint

    def introspect(self, token: str) -> dict[str, Any]:
        """The issuer's answer for an active token (RFC 7662 §2.2); raises for an inactive one."""
        endpoint = self.endpoint()
        with unavailable_on_failure("introspection"):
            response = self._fetcher.post_form(
                endpoint,
                {"token": token, "token_type_hint": "access_token"},
                basic_auth=self._credentials.basic_auth(),
            )
        answer = response.json_object()
        if answer.get("active") is not True:
            raise TokenInactive()
        return answer

    def confirm(self, token: str, verified: AccessToken) -> None:
        """Introspect and require the answer to describe the token we verified locally."""
        answer = self.introspect(token)
        for name in CROSS_CHECKED:
            if name in answer and answer[name] != verified.claims.get(name):
                raise TokenInactive("the introspection answer describes another token")
        if "aud" in answer:
            audiences = answer["aud"] if isinstance(answer["aud"], list) else [answer["aud"]]
            if not set(verified.audience) & set(a for a in audiences if isinstance(a, str)):
                raise TokenInactive("the introspection answer describes another audience")
