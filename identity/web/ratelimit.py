"""Rate limits against brute force and flooding (Flask-Limiter), keyed on the caller's address.

* **Client authentication failures** at ``/token``, ``/revoke`` and ``/introspect``, one budget for
  the three: only answers ``401 invalid_client`` are counted. Once the budget is spent every
  request from that address to those endpoints is refused until the window ends, the right secret
  included (a guess that happened to be right must not be told so). A request that authenticates
  costs one counter read and nothing else.
* ``/authorize`` (GET and POST): every request counts (each parks a pending login in the store).
* ``/login/callback``: every request counts (each consumes a login state and may call the IdP).
* ``POST /me/email/change``: every request counts (each may start an e-mail change and park a login).

Over a limit the answer is ``429`` with ``Retry-After`` (seconds): RFC 6749 §5.2-shaped JSON on the
back channel, the HTML error page in the browser.

Counters live in ``IDENTITY_RATE_LIMIT_STORAGE_URI`` (``memory://`` counts per process: with several
workers or instances use shared storage; ``mongodb://…`` works with the installed driver). If that
storage fails at run time the limits fail open and the failure is logged (Flask-Limiter falls back
to per-process memory): a rate-limit outage never turns into an error for the person.

The key is ``REMOTE_ADDR``. Behind a reverse proxy, have the proxy's address not count as the
client's (``werkzeug.middleware.proxy_fix.ProxyFix`` with the number of trusted hops), or every client
shares the proxy's budget.

No Flask request hook is added: the browser endpoints are limited by Flask-Limiter's view
decorators, and the client-authentication budget is counted around the WSGI app, so the token
endpoint's fast path (``identity.web.oauth.TokenFastPath``) stays on with rate limiting enabled.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Callable, Iterable

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from limits.errors import ConfigurationError as LimitsConfigurationError

from ..config import ConfigError, Settings
from .headers import STRICT_CSP, secure_response
from .pages import error_page

log = logging.getLogger(__name__)

EXTENSION = "identity.rate_limiter"
KEY_PREFIX = "identity"
CLIENT_AUTH_FAILURES = "20 per minute"
AUTHORIZE = "60 per minute"
LOGIN_CALLBACK = "30 per minute"
EMAIL_CHANGE = "10 per minute"

CLIENT_AUTH_PATHS = frozenset({"/token", "/revoke", "/introspect"})
CLIENT_AUTH_SCOPE = "client-authentication"
AUTHORIZE_ENDPOINT = "oauth.authorize"
CALLBACK_ENDPOINT = "upstream_login.callback"
EMAIL_CHANGE_ENDPOINT = "email_change.act"
BROWSER_MESSAGE = "Too many sign-in attempts came from your network. Wait a minute, then start again from the app."

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def install_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """Attach the limits to ``app``: call it last in ``create_app``. None when switched off.

    Raises ``ConfigError`` when ``IDENTITY_RATE_LIMIT_STORAGE_URI`` names storage that cannot be used.
    """
    if not settings.rate_limits_enabled:
        return None
    limiter = Limiter(get_remote_address, storage_uri=settings.rate_limit_storage_uri, strategy="fixed-window",
                      key_prefix=KEY_PREFIX, headers_enabled=False, swallow_errors=True,
                      in_memory_fallback_enabled=True)
    # Flask-Limiter's init_app adds before/after/teardown request hooks unless the app already lists
    # this limiter. None is needed here (see the module docstring), and any hook would switch off
    # the token endpoint's fast path, so the limiter is listed first.
    app.extensions.setdefault("limiter", set()).add(limiter)
    try:
        limiter.init_app(app)
    except LimitsConfigurationError as exc:
        raise ConfigError([f"IDENTITY_RATE_LIMIT_STORAGE_URI cannot be used: {exc}"]) from None
    app.extensions[EXTENSION] = limiter

    _limit_view(app, AUTHORIZE_ENDPOINT, limiter.limit(AUTHORIZE))
    _limit_view(app, CALLBACK_ENDPOINT, limiter.limit(LOGIN_CALLBACK))
    _limit_view(app, EMAIL_CHANGE_ENDPOINT, limiter.limit(EMAIL_CHANGE))

    @app.errorhandler(RateLimitExceeded)
    def _too_many(err: RateLimitExceeded) -> Response:
        retry_after = _seconds_until_reset(limiter)
        log.warning("rate limit reached", extra={"endpoint": request.endpoint, "limit": str(err.limit.limit)})
        response = error_page(BROWSER_MESSAGE, 429)
        response.headers["Retry-After"] = str(retry_after)
        return response

    app.wsgi_app = ClientAuthenticationBudget(  # type: ignore[method-assign]
        app.wsgi_app, limiter, parse(CLIENT_AUTH_FAILURES), https=settings.issuer_is_https)
    return limiter


def _limit_view(app: Flask, endpoint: str, limit: Callable[[Any], Any]) -> None:
    view = app.view_functions.get(endpoint)
    if view is not None:  # no /login/callback when no login broker is configured
        app.view_functions[endpoint] = limit(view)


def _seconds_until_reset(limiter: Limiter) -> int:
    current = limiter.current_limit
    if current is None:
        return 60
    try:
        return max(1, math.ceil(current.window.reset_time - time.time()))
    except Exception:  # noqa: BLE001 - the counter storage failed as we looked: a conservative answer
        return 60


class ClientAuthenticationBudget:
    """Counts ``401`` answers of the client-authenticating endpoints per address; 429 once spent."""

    def __init__(self, wsgi_app: WsgiApp, limiter: Limiter, limit: RateLimitItem, *, https: bool) -> None:
        self._next = wsgi_app
        self._limiter = limiter
        self._limit = limit
        self._https = https

    def _args(self, environ: dict[str, Any]) -> tuple[str, str, str]:
        return KEY_PREFIX, environ.get("REMOTE_ADDR") or "unknown", CLIENT_AUTH_SCOPE

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in CLIENT_AUTH_PATHS:
            return self._next(environ, start_response)
        args = self._args(environ)
        try:
            allowed = self._limiter.limiter.test(self._limit, *args)
        except Exception:  # noqa: BLE001 - fail open: a counter outage must not lock everyone out
            log.exception("rate limit storage failed; client authentication is not being limited")
            allowed = True
        if not allowed:
            return self._refuse(args, start_response)

        def observe(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status.startswith("401"):
                try:
                    self._limiter.limiter.hit(self._limit, *args)
                except Exception:  # noqa: BLE001
                    log.exception("rate limit storage failed; a client authentication failure went uncounted")
            return start_response(status, headers, exc_info)

        return self._next(environ, observe)

    def _refuse(self, args: tuple[str, str, str], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            reset_at = self._limiter.limiter.get_window_stats(self._limit, *args).reset_time
            retry_after = max(1, math.ceil(reset_at - time.time()))
        except Exception:  # noqa: BLE001
            retry_after = 60
        log.warning("rate limit reached", extra={"endpoint": "client_authentication", "limit": str(self._limit)})
        body = json.dumps({"error": "too_many_requests", "error_description":
                           f"too many failed client authentications from this address; retry after "
                           f"{retry_after} seconds"}).encode("utf-8")
        response = Response(body, status=429, mimetype="application/json")
        response.headers["Retry-After"] = str(retry_after)
        response.headers["Pragma"] = "no-cache"
        secure_response(response, https=self._https, page_csp=STRICT_CSP)
        start_response("429 Too Many Requests", list(response.headers.items()))
        return [body]
