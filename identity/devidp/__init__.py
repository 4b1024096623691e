"""A small but real OpenID Provider for development; refused in production.

It serves discovery, a JWKS, an authorization endpoint with an e-mail form (no password: whoever
types an address is that person, hence development only) and a token endpoint that returns an
ES256-signed ID token with ``email`` and ``email_verified``. With ``IDENTITY_ENV=development`` and
no ``IDENTITY_UPSTREAM_*``, the service mounts it at ``{IDENTITY_ISSUER}/devidp`` and logs in
through it with exactly the broker code that talks to Auth0 in production.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any, Callable

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ..config import ConfigError, Settings
from ..store import Store
from .codes import CodeBook
from .config import DevIdPConfig, derive_key
from .keys import ALGORITHM, SigningKeys
from .tokens import TokenIssuer
from .web import create_devidp_app

__all__ = ["DevIdP", "DevIdPConfig", "MOUNT_PATH", "CLIENT_ID", "mount_devidp"]

log = logging.getLogger(__name__)
MOUNT_PATH = "/devidp"
CLIENT_ID = "identity-service"


class DevIdP:
    """The provider: its configuration, keys, codes, and its WSGI app (``.app``)."""

    def __init__(self, config: DevIdPConfig, *, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.keys = SigningKeys(config.secret)
        self.codes = CodeBook(store, key=config.derive("codes"), ttl=config.code_ttl, clock=clock)
        self.tokens = TokenIssuer(config, keys=self.keys, codes=self.codes, clock=clock)
        self.app: Flask = create_devidp_app(self)

    def __repr__(self) -> str:
        return f"DevIdP(issuer={self.issuer!r})"

    @property
    def issuer(self) -> str:
        return self.config.issuer

    def metadata(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0 §3 (an issuer may end in ``/``, as Auth0's does)."""
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "scopes_supported": ["openid", "email"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }


def mount_devidp(app: Flask, settings: Settings, *, store: Store, secret: bytes, redirect_uri: str) -> DevIdP:
    """Serve a development IdP at ``{issuer}/devidp`` inside ``app``; ``ConfigError`` in production."""
    if settings.is_production:
        raise ConfigError(["the development IdP is refused in production: set IDENTITY_UPSTREAM_ISSUER, "
                           "IDENTITY_UPSTREAM_CLIENT_ID and IDENTITY_UPSTREAM_CLIENT_SECRET"])
    client_secret = base64.urlsafe_b64encode(derive_key(secret, "client-secret")).rstrip(b"=").decode()
    config = DevIdPConfig(issuer=settings.issuer + MOUNT_PATH, client_id=CLIENT_ID, client_secret=client_secret,
                          redirect_uris=(redirect_uri,), secret=secret)
    idp = DevIdP(config, store=store)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {MOUNT_PATH: idp.app})  # type: ignore[method-assign]
    log.warning("development IdP mounted at %s: anyone can sign in as any address (never in production)",
                config.issuer)
    return idp
