"""The login broker: from a parked authorization request, through the upstream IdP, to the app.

``begin`` (called by ``/authorize``) sends the person to the IdP with a fresh ``state``, ``nonce``
and PKCE S256 challenge, kept server side with the ``pending_id``. ``/login/callback`` consumes that
state (one-time, bound to the browser), exchanges the code, validates the ID token completely and
hands the verified e-mail to ``SignIns.complete``. A login that must be a fresh sign-in (the
e-mail change, the account page, an app's ``prompt=login`` or ``max_age=0``) asks the IdP for
``prompt=login`` and ``max_age=0`` and requires an ``auth_time`` no older than the moment it was sent;
an app's other ``max_age`` is passed on and its ``auth_time`` must be no older than that allows
(OpenID Connect Core §3.1.2.1). The ID token's ``auth_time`` is kept with the parked request for the
app's code (``Authorizer.record_authentication``). The e-mail exists only in this request's memory:
never in a log record, the session, a token or an error message.

Every failure is answered: without a valid state there is no verified app redirect, so the person
gets an error page; with one, the app gets an OAuth error at its registered redirect URI.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import OAuthError
from flask import Blueprint, Flask, redirect, request, session
from requests.adapters import BaseAdapter
from werkzeug.wrappers import Response

from ..logs import note_client_id, security_event
from ..metrics import count_login
from ..oauth.authorize import PendingAuthorization
from ..store import StoreUnavailable
from ..vault import InvalidEmail, normalise_email
from ..verify.b64 import b64url_decode
from ..web.context import services
from ..web.headers import no_store
from ..web.pages import error_page
from .client import UpstreamApp, register_upstream
from .config import CALLBACK_PATH, UpstreamConfig
from .errors import LoginRefused, UpstreamDenied, UpstreamFailure, UpstreamUnavailable
from .idtoken import LEEWAY_SECONDS, verified_email
from .state import StoreStateCache

log = logging.getLogger(__name__)

INVALID_STATE = "This sign-in link is not valid, has expired or was already used. Start again from the app."
PENDING_GONE = "This sign-in took too long or was already completed. Start again from the app."
STORE_DOWN = "The service is temporarily unavailable. Try again in a moment."
# OpenID Connect Core §3.1.2.1: "max_age=0 is equivalent to prompt=login"; with max_age the ID token
# MUST carry auth_time, which the callback then checks.
REAUTHENTICATE = {"prompt": "login", "max_age": "0"}
# Sign-ins one browser may have in flight at once: each keeps a marker in the session cookie, and
# another site can start sign-ins in a person's browser (top-level navigations to /authorize) until the
# cookie outgrows what browsers keep (4 KB), which would stop every sign-in there. The oldest go first.
MAX_SIGNINS_IN_FLIGHT = 8


def login_outcome(failure: UpstreamFailure) -> str:
    """The metric's and the log's word for how a login failed."""
    if isinstance(failure, UpstreamDenied):
        return "denied"
    if isinstance(failure, LoginRefused):
        return "refused"
    if isinstance(failure, UpstreamUnavailable):
        return "unavailable"
    return "error"


def freshness(pending: PendingAuthorization, now: int) -> tuple[dict[str, str], int | None]:
    """What to ask the IdP for (OIDC Core §3.1.2.1) and the oldest ``auth_time`` to accept (None: any)."""
    if pending.reauthenticate:
        return REAUTHENTICATE, now
    if pending.max_age is not None:
        return {"max_age": str(pending.max_age)}, now - pending.max_age
    return {}, None


def upstream_auth_time(id_token: str, now: float) -> int | None:
    """The ``auth_time`` of an ID token ``verified_email`` has just accepted (so its signature is checked);
    None if it has none, or one that is not a time up to now."""
    try:
        claims = json.loads(b64url_decode(id_token.split(".")[1]))
    except (IndexError, ValueError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    value = claims.get("auth_time") if isinstance(claims, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= now + LEEWAY_SECONDS:
        return None
    return min(int(value), int(now))


def login_refused(reason: str) -> None:
    """A callback refused before any app could be told (no valid state): the person gets an error page."""
    count_login("refused")
    security_event("login", "upstream login refused", level=logging.WARNING, outcome="refused", reason=reason)


class UpstreamBroker:
    """A ``LoginBroker`` for any OpenID Provider; ``init_app`` adds ``/login/callback``."""

    def __init__(self, config: UpstreamConfig, *, mounts: Mapping[str, BaseAdapter] | None = None) -> None:
        self.config = config
        self._mounts = dict(mounts or {})
        self._client: UpstreamApp | None = None
        self._keys_fetched_at: float | None = None

    def __repr__(self) -> str:
        return f"UpstreamBroker(issuer={self.config.issuer!r})"

    def init_app(self, app: Flask) -> None:
        if self._client is not None:
            raise RuntimeError("an UpstreamBroker serves one app")
        svc = app.extensions["identity"]
        cache = StoreStateCache(svc.store, ttl=self.config.state_ttl, clock=svc.clock)
        self._client = register_upstream(app, self.config, cache=cache, mounts=self._mounts)
        blueprint = Blueprint("upstream_login", __name__)
        blueprint.add_url_rule(CALLBACK_PATH, "callback", self.finish, methods=["GET"])
        app.register_blueprint(blueprint)

    @property
    def client(self) -> UpstreamApp:
        if self._client is None:
            raise RuntimeError("UpstreamBroker.init_app(app) was not called")
        return self._client

    # -- start ---------------------------------------------------------------------------------

    def begin(self, pending: PendingAuthorization) -> Response:
        """Redirect to the IdP; if it cannot be reached, answer the app ``temporarily_unavailable``."""
        extra, authenticated_after = freshness(pending, int(time.time()))
        try:
            self._metadata()
            started = self.client.create_authorization_url(self.config.callback_url, **extra)
        except UpstreamFailure as failure:
            return self._fail(pending.pending_id, failure)
        except Exception:  # an unforeseen answer or a bug: still an OAuth error, not a 500
            log.exception("upstream login: unexpected error while starting")
            return self._fail(pending.pending_id, UpstreamFailure("unexpected_error"))
        fresh = {} if authenticated_after is None else {"authenticated_after": authenticated_after}
        self._make_room_for_a_signin()
        self.client.save_authorize_data(
            state=started["state"], redirect_uri=self.config.callback_url, pending_id=pending.pending_id,
            code_verifier=started["code_verifier"], nonce=started["nonce"], **fresh,
        )
        return redirect(started["url"], code=303)

    def _make_room_for_a_signin(self) -> None:
        """Drop this browser's expired sign-in markers, and its oldest beyond ``MAX_SIGNINS_IN_FLIGHT`` - 1."""
        framework = self.client.framework
        prefix = f"_state_{framework.name}_"
        now = time.time()

        def expiry(key: str) -> float:
            marker = session.get(key)
            exp = marker.get("exp") if isinstance(marker, dict) else None
            return float(exp) if isinstance(exp, (int, float)) else 0.0

        markers = sorted((key for key in list(session) if key.startswith(prefix)), key=expiry)  # oldest first
        expired = [key for key in markers if expiry(key) < now]
        live = [key for key in markers if expiry(key) >= now]
        for key in expired + live[:max(0, len(live) - (MAX_SIGNINS_IN_FLIGHT - 1))]:
            framework.clear_state_data(session, key[len(prefix):])  # its server-side record too

    def form_action_origins(self) -> tuple[str, ...]:
        """Origins a form of ours that starts a login redirects to (for its page's CSP ``form-action``)."""
        urls = [self.config.issuer]
        try:
            urls.append(self._metadata()["authorization_endpoint"])
        except UpstreamFailure:
            pass  # the login will not start anyway; the page still works
        return tuple(sorted({f"{p.scheme}://{p.netloc}" for p in map(urlsplit, urls) if p.scheme and p.netloc}))

    # -- callback ------------------------------------------------------------------------------

    def finish(self) -> Response:
        """``GET /login/callback``: an error page, or a redirect to the app (code or OAuth error)."""
        try:
            return no_store(self._finish())
        except StoreUnavailable as exc:
            log.error("upstream login: store unavailable (%s)", type(exc).__name__)
            return error_page(STORE_DOWN, 503)

    def _finish(self) -> Response:
        args = request.args
        if any(len(args.getlist(name)) > 1 for name in args):
            login_refused("repeated_callback_parameter")
            return error_page(INVALID_STATE, 400)
        data = self._take_state(args.get("state", ""))
        if data is None:
            login_refused("unknown_or_used_state")
            return error_page(INVALID_STATE, 400)
        signins = services().signins
        pending_id = data.get("pending_id")
        if not isinstance(pending_id, str) or (parked := signins.pending(pending_id)) is None:
            login_refused("pending_authorization_gone")
            return error_page(PENDING_GONE, 400)
        try:
            email, auth_time = self._verified_email(args, data)
            email = normalise_email(email)
        except UpstreamFailure as failure:
            return self._fail(pending_id, failure)
        except InvalidEmail:
            return self._fail(pending_id, LoginRefused("email_malformed"))
        except StoreUnavailable:
            raise
        except Exception:  # RFC 6749 §4.1.2.1: server_error instead of a 500 the app never sees
            log.exception("upstream login: unexpected error at the callback")
            return self._fail(pending_id, UpstreamFailure("unexpected_error"))
        if auth_time is not None:
            services().oauth.authorizer.record_authentication(pending_id, auth_time)
        location = signins.complete(pending_id, email)  # an ErrorPage is rendered by web.errors
        note_client_id(parked["client_id"])
        count_login("success")
        security_event("login", "upstream login completed", outcome="success", client_id=parked["client_id"])
        return redirect(location, code=303)

    def _take_state(self, state: str) -> dict[str, Any] | None:
        """The stored data for ``state`` if this browser started it; consumed (one-time).

        Authlib's ``clear_state_data`` also deletes the stored state when this browser's session has
        no marker for it; checked first, so that a stranger replaying someone's callback URL cannot
        cancel their sign-in.
        """
        if not state:
            return None
        framework = self.client.framework
        if f"_state_{framework.name}_{state}" not in session:
            return None
        data = framework.get_state_data(session, state)
        framework.clear_state_data(session, state)
        return data if isinstance(data, dict) else None

    def _verified_email(self, args: Mapping[str, str], data: Mapping[str, Any]) -> tuple[str, int | None]:
        """The verified e-mail and the ID token's ``auth_time`` (None when it has none)."""
        if "error" in args:
            raise UpstreamDenied(args["error"])
        metadata = self._metadata()
        if "iss" in args and args["iss"] != metadata["issuer"]:  # RFC 9207: a mix-up defence
            raise LoginRefused("callback_iss_mismatch")
        code = args.get("code")
        if not code:
            raise LoginRefused("no_code")
        try:
            token = self.client.fetch_access_token(redirect_uri=data["redirect_uri"], code=code,
                                                   code_verifier=data["code_verifier"])
        except OAuthError:
            raise LoginRefused("token_endpoint_refused") from None
        except (requests.RequestException, ValueError) as exc:
            raise UpstreamUnavailable(f"token_endpoint_{type(exc).__name__}") from None
        now = time.monotonic()
        refresh = self._keys_fetched_at is None or now - self._keys_fetched_at >= self.config.jwks_max_age
        email = verified_email(self.client, token, issuer=metadata["issuer"], client_id=self.config.client_id,
                               nonce=data["nonce"], refresh_keys=refresh,
                               authenticated_after=data.get("authenticated_after"))
        if refresh:
            self._keys_fetched_at = now
        return email, upstream_auth_time(token["id_token"], time.time())

    # -- shared --------------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        """The IdP's checked discovery document (``UpstreamApp.load_server_metadata``: fetched once, checked
        and allow-listed there; ``UpstreamUnavailable``/``UpstreamMisconfigured`` when it cannot be used)."""
        return self.client.load_server_metadata()

    def _fail(self, pending_id: str, failure: UpstreamFailure) -> Response:
        """Consume the parked request and send its app the OAuth error (or a page if it is gone)."""
        outcome = login_outcome(failure)
        count_login(outcome)
        security_event("login", "upstream login failed", level=logging.WARNING, outcome=outcome,
                       reason=failure.reason, error=failure.error)
        location = services().signins.fail(pending_id, failure.error, failure.description)
        if location is None:
            return error_page(PENDING_GONE, 400)
        return no_store(redirect(location, code=303))
