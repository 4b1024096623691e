"""Authorization server metadata (RFC 8414) and OpenID Provider discovery (OIDC Discovery 1.0)."""

from __future__ import annotations

from typing import Any, Callable

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from .clients import GRANT_TYPES, ClientRegistry

# The discovery document lists every registered client's scopes, which takes a scan of the clients. The
# endpoint is public and unauthenticated, so each process rebuilds the document at most this often
# (clients cache it for 300 s anyway): a burst of discovery requests costs one scan, not one each.
REBUILD_SECONDS = 10.0


def server_metadata(issuer: str, *, scopes: list[str]) -> dict[str, Any]:
    """Everything the endpoints do, advertised; validated with Authlib's RFC 8414 checker."""
    metadata = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "userinfo_endpoint": f"{issuer}/userinfo",  # OIDC Core §5.3: tokens for {issuer}/me with scope openid
        "end_session_endpoint": f"{issuer}/logout",  # OpenID Connect RP-Initiated Logout 1.0
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "access_token_encryption": {"alg": "RSA-OAEP-256", "enc": "A256GCM", "signing_alg": "RS256"},
    }
    AuthorizationServerMetadata(metadata).validate()
    return metadata


class DiscoveryDocument:
    """The metadata document, rebuilt at most every ``REBUILD_SECONDS`` per process."""

    def __init__(self, issuer: str, clients: ClientRegistry, *, clock: Callable[[], float]) -> None:
        self._issuer = issuer
        self._clients = clients
        self._clock = clock
        self._built: tuple[float, dict[str, Any]] | None = None

    def current(self) -> dict[str, Any]:
        now = self._clock()
        if self._built is None or not 0 <= now - self._built[0] < REBUILD_SECONDS:
            scopes = sorted({s for c in self._clients.all() for s in c.scopes} | {"openid"})
            self._built = (now, server_metadata(self._issuer, scopes=scopes))
        return self._built[1]
