"""Rate limits against brute force and flooding (Flask-Limiter), keyed on the client's address.

The address is ``REMOTE_ADDR`` once the trusted-proxy layer has set it (``identity.web.proxies``,
``IDENTITY_TRUSTED_PROXIES``), counted per IPv4 address or per IPv6 /64 (``identity.addresses``).

* **Client authentication** at ``/token``, ``/revoke`` and ``/introspect`` (one budget for the three,
  ``ClientAuthBudget``). A failure (``401 invalid_client``) counts once for the (address, client_id)
  pair and once for the address. A request that presents a client secret is refused with 429, *before its
  secret is checked*, when its pair has failed ``CLIENT_AUTH_FAILURES_PER_CLIENT`` times, or has failed
  at all while its address has failed ``CLIENT_AUTH_FAILURES_PER_ADDRESS`` times. Nothing else is
  refused: a client with no failures from that address is always checked (other clients' failures, and
  failures from other addresses, never refuse it), and a request without a secret guesses nothing (public
  clients). A guess refused is not checked, so a right one is not confirmed: at most 10 guesses at one
  client's secret per minute per address, and an address guessing across clients gets 60 guesses a
  minute, then one per client it has not tried yet.
* ``/authorize`` (GET and POST): every request counts (each parks a pending login in the store).
* ``/login/callback``: every request counts (each consumes a login state and may call the IdP).
* ``POST /me/email/change``: every request counts (each may start an e-mail change and park a login).
* ``POST /account/signin``: every request counts (each parks a login for the account page).

Over a limit the answer is ``429`` with ``Retry-After`` (seconds): RFC 6749 §5.2-shaped JSON on the
back channel, the HTML error page in the browser.

Counters live in ``IDENTITY_RATE_LIMIT_STORAGE_URI`` (``memory://`` counts per process: production
refuses it with several workers, ``worker_count_refusal``; ``redis://…``/``rediss://…`` and ``mongodb://…``
work with the installed drivers and are shared by every worker and instance that names them:
tests/test_fleet.py runs two instances on one Redis). If that storage fails at run time the limits fail open and the failure is logged: a
rate-limit outage never turns into an error for the person.

No Flask request hook is added: the two browser endpoints are limited by Flask-Limiter's view
decorators, and the client-authentication budget is run by the three views and by the token endpoint's
fast path (``identity.web.token_fast_path.TokenFastPath``) around their call to the service, so the fast path
stays on with rate limiting enabled. A request with a valid secret and no failures costs one counter read.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
import time
from typing import Any, Callable, Mapping, TypeVar

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, parse
from limits.errors import ConfigurationError as LimitsConfigurationError

from .._compat import init_limiter_without_request_hooks
from ..addresses import counting_key
from ..config import ConfigError, Settings, load_settings
from ..errors import InvalidClient, ServiceError
from ..logs import security_event
from ..metrics import count_rate_limit_refusal
from ..oauth.client_auth import read_credentials
from .pages import error_page

log = logging.getLogger(__name__)

EXTENSION = "identity.rate_limiter"
CLIENT_AUTH_BUDGET = "identity.client_auth_budget"
KEY_PREFIX = "identity"
CLIENT_AUTH_FAILURES_PER_CLIENT = "10 per minute"
CLIENT_AUTH_FAILURES_PER_ADDRESS = "60 per minute"
AUTHORIZE = "60 per minute"
LOGIN_CALLBACK = "30 per minute"
EMAIL_CHANGE = "10 per minute"
ACCOUNT_SIGNIN = "10 per minute"

CLIENT_SCOPE = "client-authentication"
ADDRESS_SCOPE = "client-authentication-address"
AUTHORIZE_ENDPOINT = "oauth.authorize"
CALLBACK_ENDPOINT = "upstream_login.callback"
EMAIL_CHANGE_ENDPOINT = "email_change.act"
ACCOUNT_SIGNIN_ENDPOINT = "account.signin"
BROWSER_MESSAGE = "Too many sign-in attempts came from your network. Wait a minute, then start again from the app."
FORWARDED_WITHOUT_TRUST = ("requests carry X-Forwarded-For but IDENTITY_TRUSTED_PROXIES is not set: the header is "
                           "ignored, and if a proxy sets it, every client behind that proxy shares its rate limits")

T = TypeVar("T")


def install_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """Attach the limits to ``app`` (after the blueprints). None when switched off.

    Raises ``ConfigError`` when ``IDENTITY_RATE_LIMIT_STORAGE_URI`` names storage that cannot be used.
    """
    if not settings.rate_limits_enabled:
        return None
    limiter = Limiter(client_address, storage_uri=settings.rate_limit_storage_uri, strategy="fixed-window",
                      key_prefix=KEY_PREFIX, headers_enabled=False, swallow_errors=True,
                      in_memory_fallback_enabled=True)
    try:
        init_limiter_without_request_hooks(limiter, app)  # any request hook would switch off the token fast path
    except LimitsConfigurationError as exc:
        raise ConfigError([f"IDENTITY_RATE_LIMIT_STORAGE_URI cannot be used: {exc}"]) from None
    app.extensions[EXTENSION] = limiter
    app.extensions[CLIENT_AUTH_BUDGET] = ClientAuthBudget(limiter, proxies_trusted=bool(settings.trusted_proxies))

    _limit_view(app, AUTHORIZE_ENDPOINT, limiter.limit(AUTHORIZE))
    _limit_view(app, CALLBACK_ENDPOINT, limiter.limit(LOGIN_CALLBACK))
    _limit_view(app, EMAIL_CHANGE_ENDPOINT, limiter.limit(EMAIL_CHANGE))
    _limit_view(app, ACCOUNT_SIGNIN_ENDPOINT, limiter.limit(ACCOUNT_SIGNIN))

    @app.errorhandler(RateLimitExceeded)
    def _too_many(err: RateLimitExceeded) -> Response:
        retry_after = _seconds_until_reset(limiter)
        endpoint = request.endpoint or "unknown"
        count_rate_limit_refusal(endpoint)
        security_event("rate_limit", "rate limit reached", level=logging.WARNING, endpoint=endpoint,
                       limit=str(err.limit.limit))
        response = error_page(BROWSER_MESSAGE, 429)
        response.headers["Retry-After"] = str(retry_after)
        return response

    return limiter


def client_address() -> str:
    """Flask-Limiter's key: the request's address as the limits count it (an IPv6 /64 as one)."""
    return counting_key(request.remote_addr or "")


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


# -- client authentication ------------------------------------------------------------------------

class TooManyFailures(ServiceError):
    """429: the client-authentication budget is spent; ``Retry-After`` says for how long."""

    error = "too_many_requests"
    status_code = 429

    def __init__(self, description: str, *, retry_after: int) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ClientAuthBudget:
    """Counts failed client authentications per (address, client_id) and per address (module docstring)."""

    def __init__(self, limiter: Limiter, *, proxies_trusted: bool) -> None:
        self._limiter = limiter
        self._per_client = parse(CLIENT_AUTH_FAILURES_PER_CLIENT)
        self._per_address = parse(CLIENT_AUTH_FAILURES_PER_ADDRESS)
        self._warn_forwarded = not proxies_trusted

    def run(self, environ: Mapping[str, Any], form: Mapping[str, str], authorization: str | None,
            call: Callable[[], T]) -> T:
        """``call()`` (which authenticates the client from ``form`` and ``authorization``) within the budget.

        Raises ``TooManyFailures`` instead of calling it when the request's secret may not be checked.
        """
        try:
            presented = read_credentials(authorization, form)
            client_id, secret_presented = presented.client_id, presented.secret is not None
        except InvalidClient:  # no or malformed credentials: a failure, but nothing guessed
            client_id, secret_presented = "", False
        except ServiceError:  # a malformed request (400), no authentication attempt
            return call()
        address = counting_key(environ.get("REMOTE_ADDR") or "")
        if self._warn_forwarded and "HTTP_X_FORWARDED_FOR" in environ:
            self._warn_forwarded = False
            log.warning(FORWARDED_WITHOUT_TRUST)
        pair = (KEY_PREFIX, CLIENT_SCOPE, address, _client_key(client_id))
        if secret_presented:
            self._admit(pair, address)
        try:
            return call()
        except InvalidClient:
            self._count_failure(pair, address)
            raise

    def _admit(self, pair: tuple[str, ...], address: str) -> None:
        failures = self._failures(self._per_client, pair)
        if not failures:
            return  # the usual case: one counter read
        if failures >= self._per_client.amount:
            self._refuse(self._per_client, pair, "too many failed authentications of this client from your address")
        here = (KEY_PREFIX, ADDRESS_SCOPE, address)
        if self._failures(self._per_address, here) >= self._per_address.amount:
            self._refuse(self._per_address, here, "too many failed client authentications from your address")

    def _failures(self, item: RateLimitItem, keys: tuple[str, ...]) -> int:
        try:
            return int(self._limiter.limiter.storage.get(item.key_for(*keys)))
        except Exception:  # fail open: a counter outage must not lock everyone out
            log.exception("rate limit storage failed; client authentication is not being limited")
            return 0

    def _count_failure(self, pair: tuple[str, ...], address: str) -> None:
        try:
            self._limiter.limiter.hit(self._per_client, *pair)
            self._limiter.limiter.hit(self._per_address, KEY_PREFIX, ADDRESS_SCOPE, address)
        except Exception:
            log.exception("rate limit storage failed; a client authentication failure went uncounted")

    def _refuse(self, item: RateLimitItem, keys: tuple[str, ...], reason: str) -> None:
        try:
            reset_at = self._limiter.limiter.storage.get_expiry(item.key_for(*keys))
            retry_after = max(1, math.ceil(reset_at - time.time()))
        except Exception:  # noqa: BLE001
            retry_after = 60
        count_rate_limit_refusal("client_authentication")
        security_event("rate_limit", "rate limit reached", level=logging.WARNING, endpoint="client_authentication",
                       limit=str(item), budget=keys[1])
        raise TooManyFailures(f"{reason}; retry after {retry_after} seconds", retry_after=retry_after)


def _client_key(client_id: str) -> str:
    """A fixed-length counter key for a presented client_id (any text, up to 512 characters)."""
    return hashlib.blake2b(client_id.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


# -- per-process counters in production -----------------------------------------------------------

def per_process_counters_problem(settings: Settings, workers: int) -> str | None:
    """Why production must not serve with ``workers`` processes and these counters; None when it may."""
    if not (settings.is_production and settings.rate_limits_enabled and workers > 1):
        return None
    if settings.rate_limit_storage_uri.partition("://")[0].lower() != "memory":
        return None
    return (f"IDENTITY_RATE_LIMIT_STORAGE_URI is {settings.rate_limit_storage_uri}, which counts in each process, "
            f"and production would run {workers} workers: every rate limit would be {workers} times the "
            f"documented one; set shared storage (mongodb://...) or run one worker")


def worker_count_refusal(workers: int, env: Mapping[str, str] | None = None) -> str | None:
    """For production start commands (``gunicorn.conf.py``, a server script): the one-line reason not to
    start ``workers`` worker processes with the settings in ``env`` (the environment), or None.

    Settings that do not load are left to the app's start, which reports every problem.
    """
    try:
        settings = load_settings(env)
    except ConfigError:
        return None
    problem = per_process_counters_problem(settings, workers)
    return None if problem is None else f"refusing to start: {problem}"


def exit_if_refused(workers: int, env: Mapping[str, str] | None = None) -> None:
    """Print ``worker_count_refusal``'s line on stderr and exit with status 1 when there is one."""
    reason = worker_count_refusal(workers, env)
    if reason:
        print(reason, file=sys.stderr, flush=True)
        raise SystemExit(1)
