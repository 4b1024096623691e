"""The client's address behind trusted reverse proxies (``IDENTITY_TRUSTED_PROXIES``).

A WSGI layer around everything that reads the client's address (``identity.web.pipeline``: the rate limits,
the token endpoint's fast path, Flask), which then finds it in ``REMOTE_ADDR``. Only ``X-Forwarded-For`` is read, and only as far
as the settings trust it (``identity.addresses.forwarded_client``); a malformed header is ignored. With
no trusted proxy (the default) no layer is installed and the header means nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..addresses import TrustedProxies, forwarded_client
from .headers import WsgiApp

PEER_KEY = "identity.proxy_peer"  # the TCP peer's address, kept when REMOTE_ADDR is replaced


class TrustedProxyLayer:
    """Sets ``REMOTE_ADDR`` to the client's address named by trusted proxies in ``X-Forwarded-For``."""

    def __init__(self, wsgi_app: WsgiApp, trusted: TrustedProxies) -> None:
        self._next = wsgi_app
        self._trusted = trusted

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded_for:
            peer = environ.get("REMOTE_ADDR") or ""
            client = forwarded_client(peer, forwarded_for, self._trusted)
            if client is not None:
                environ[PEER_KEY] = peer
                environ["REMOTE_ADDR"] = client
        return self._next(environ, start_response)
