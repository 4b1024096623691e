"""A small but real OpenID Provider for development; refused in production.

It serves discovery, a JWKS, an authorization endpoint with an e-mail form (no password: whoever
types an address is that person, hence development only) and a token endpoint that returns an
ES256-signed ID token with ``email`` and ``email_verified``. With ``IDENTITY_ENV=development`` set
explicitly, a loopback http ``IDENTITY_ISSUER`` and no ``IDENTITY_UPSTREAM_*``, the service mounts it
at ``{IDENTITY_ISSUER}/devidp`` and logs in through it with exactly the broker code that talks to Auth0
in production. Nothing else mounts it: never by omission, never on an address others can reach.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Flask

from ..config import DEFAULT_DEV_ISSUER, ConfigError, Settings
from ..store import Store
from ..verify.b64 import b64url_encode
from ..verify.http import is_loopback_host
from .codes import CodeBook
from .config import DevIdPConfig, derive_key
from .keys import ALGORITHM, SigningKeys
from .tokens import TokenIssuer
from .web import create_devidp_app

__all__ = ["DevIdP", "DevIdPConfig", "MOUNT_PATH", "CLIENT_ID", "build_devidp", "development_idp_refusal",
           "this_machine_only"]

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


def development_idp_refusal(settings: Settings) -> str | None:
    """Why ``settings`` may not serve the development IdP (anyone signs in as anyone), or None when they
    may: ``IDENTITY_ENV=development`` set explicitly and an http issuer on a loopback address."""
    if settings.is_production:
        return ("the development IdP is refused in production: set IDENTITY_UPSTREAM_ISSUER, "
                "IDENTITY_UPSTREAM_CLIENT_ID and IDENTITY_UPSTREAM_CLIENT_SECRET")
    if not settings.env_explicit:
        return "the development IdP is served only with IDENTITY_ENV=development set explicitly"
    issuer = urlsplit(settings.issuer)
    if issuer.scheme != "http" or not is_loopback_host(issuer.hostname):
        return (f"the development IdP is served only on a loopback http issuer such as {DEFAULT_DEV_ISSUER}, "
                f"not {settings.issuer}")
    return None


def this_machine_only(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` answered only to callers on this machine (a loopback ``REMOTE_ADDR``, as the trusted-proxy layer
    gives it), 403 to anyone else: the service may listen on a network address in development
    (``serve.py --bind 0.0.0.0:…``, a container's published port), and whoever reaches the IdP signs in as
    anyone. The service's own calls to it never leave the process (``WsgiTransport``)."""
    def only_here(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        remote = environ.get("REMOTE_ADDR")
        if not remote or is_loopback_host(remote):  # none: not from a network listener (in-process, Unix socket)
            return app(environ, start_response)
        body = b"the development IdP answers only on this machine\n"
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [body]

    return only_here


def build_devidp(settings: Settings, *, store: Store, secret: bytes, redirect_uri: str) -> DevIdP:
    """A development IdP for ``{issuer}/devidp``; ``ConfigError`` unless ``development_idp_refusal`` allows it.

    Serving it is the request pipeline's (``identity.web.pipeline``): ``idp.app`` mounted at ``MOUNT_PATH``."""
    refusal = development_idp_refusal(settings)
    if refusal is not None:
        raise ConfigError([refusal])
    client_secret = b64url_encode(derive_key(secret, "client-secret"))
    config = DevIdPConfig(issuer=settings.issuer + MOUNT_PATH, client_id=CLIENT_ID, client_secret=client_secret,
                          redirect_uris=(redirect_uri,), secret=secret)
    idp = DevIdP(config, store=store)
    log.warning("development IdP served at %s: anyone can sign in as any address (never in production)",
                config.issuer)
    return idp
