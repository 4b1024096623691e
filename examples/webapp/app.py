"""The example app's routes. The cookie holds a random id; tokens and sign-in state stay on the server.

``GET /login`` → the service's ``authorization_endpoint`` (code, PKCE S256, ``state``, ``nonce``,
``resource`` = the downstream audience); ``GET /callback`` checks ``state`` and ``iss`` (RFC 9207),
exchanges the code at the ``token_endpoint`` and verifies the ID token (``IdTokenVerifier``, with the
nonce); ``POST /records`` calls the downstream service with the access token; ``POST /refresh``
renews it with the refresh token; ``POST /logout`` → the ``end_session_endpoint`` with
``id_token_hint``, ``client_id``, ``post_logout_redirect_uri`` and ``state``; ``GET /signed-out``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from typing import Any, Literal, overload
from urllib.parse import urlencode, urlsplit

import requests
from flask import Flask, Response, redirect, render_template, request, session

from identity.verify import IdTokenVerifier, VerificationError
from identity.web.csrf import csrf_ok, csrf_token
from identity.web.headers import style_hashes

from .config import WebAppConfig

TIMEOUT = (3.0, 10.0)
MAX_BROWSERS = 10_000
SHOWN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce")


class Issuer:
    """The identity service as its discovery document describes it (fetched once)."""

    def __init__(self, issuer: str, http: requests.Session) -> None:
        self.issuer = issuer
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                response = self._http.get(f"{self.issuer}/.well-known/openid-configuration", timeout=TIMEOUT)
                response.raise_for_status()
                document = response.json()
                if document.get("issuer") != self.issuer:
                    raise ValueError("the discovery document names another issuer")
                self._metadata = document
            return self._metadata


class BrowserStates:
    """Per-browser state on the server, by a random id in the (signed) session cookie."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @overload
    def current(self) -> dict[str, Any] | None: ...
    @overload
    def current(self, *, create: Literal[True]) -> dict[str, Any]: ...
    @overload
    def current(self, *, create: bool) -> dict[str, Any] | None: ...

    def current(self, *, create: bool = False) -> dict[str, Any] | None:
        key = session.get("sid")
        with self._lock:
            state = self._states.get(key) if isinstance(key, str) else None
            if state is None and create:
                if len(self._states) >= MAX_BROWSERS:
                    self._states.clear()
                key = secrets.token_urlsafe(32)
                session["sid"] = key
                state = self._states[key] = {}
            return state

    def forget(self) -> None:
        with self._lock:
            self._states.pop(session.pop("sid", None) or "", None)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


def same(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a.encode(), b.encode())


def create_app(config: WebAppConfig, *, http: requests.Session | None = None,
               id_tokens: IdTokenVerifier | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME="webapp_session",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=config.base_url.startswith("https://"))
    http = http or requests.Session()
    issuer = Issuer(config.issuer, http)
    id_tokens = id_tokens or IdTokenVerifier(issuer=config.issuer, client_id=config.client_id)
    states = BrowserStates()
    issuer_origin = "{0.scheme}://{0.netloc}".format(urlsplit(config.issuer))
    styles = " ".join(style_hashes(app)) or "'none'"  # the layout's own inline style, by its hash
    csp = (f"default-src 'none'; style-src {styles}; form-action 'self' {issuer_origin}; frame-ancestors 'none'; "
           "base-uri 'none'")

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # the code never leaks in a Referer
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
        return render_template(template, config=config, csrf_token=csrf_token(), **context), status

    @app.get("/")
    def home() -> Any:
        state = states.current() or {}
        return page("home.html", signed_in=state.get("claims"), records=state.pop("records", None),
                    renewed=state.pop("renewed", None), shown_claims=SHOWN_CLAIMS)

    @app.get("/login")
    def login() -> Any:
        verifier, challenge = pkce_pair()
        pending = {"state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16), "verifier": verifier}
        states.current(create=True)["login"] = pending
        query = urlencode({"response_type": "code", "client_id": config.client_id, "redirect_uri": config.redirect_uri,
                           "scope": config.scope, "state": pending["state"], "nonce": pending["nonce"],
                           "code_challenge": challenge, "code_challenge_method": "S256", "resource": config.audience})
        return redirect(f"{issuer.metadata()['authorization_endpoint']}?{query}", code=303)

    @app.get("/callback")
    def callback() -> Any:
        state = states.current()
        pending = state.pop("login", None) if state is not None else None
        if state is None or pending is None or not same(request.args.get("state"), pending["state"]):
            return page("message.html", 400, title="Not our sign-in",
                        message="This answer does not belong to a sign-in started in this browser.")
        if request.args.get("iss") != config.issuer:  # RFC 9207: the answer comes from our issuer
            return page("message.html", 400, title="Not our sign-in", message="The answer names another issuer.")
        if "error" in request.args:
            return page("message.html", 200, title="Not signed in", error=request.args["error"],
                        message="The sign-in ended without access for this app.")
        answer = http.post(issuer.metadata()["token_endpoint"], timeout=TIMEOUT, data={
            "grant_type": "authorization_code", "code": request.args.get("code", ""),
            "redirect_uri": config.redirect_uri, "client_id": config.client_id, "code_verifier": pending["verifier"]})
        body = answer.json()
        if answer.status_code != 200:
            return page("message.html", 502, title="Not signed in", error=body.get("error"),
                        message="The identity service refused the code.")
        try:
            verified = id_tokens.verify(body.get("id_token"), nonce=pending["nonce"])
        except VerificationError as exc:
            return page("message.html", 502, title="Not signed in", message=f"The ID token was refused: {exc}")
        state.update(claims={k: verified.claims.get(k) for k in SHOWN_CLAIMS}, id_token=body["id_token"],
                     access_token=body["access_token"], refresh_token=body.get("refresh_token"))
        return redirect("/", code=303)

    def signed_in_state() -> dict[str, Any] | None:
        state = states.current()
        return state if state is not None and state.get("claims") and csrf_ok() else None

    @app.post("/records")
    def records() -> Any:
        state = signed_in_state()
        if state is None:
            return redirect("/", code=303)
        bearer = {"Authorization": f"Bearer {state['access_token']}"}
        posted = http.post(f"{config.records_url}/records", json={"kind": "demo.visit", "data": {"at": int(time.time())}},
                           headers=bearer, timeout=TIMEOUT)
        listed = http.get(f"{config.records_url}/records", headers=bearer, timeout=TIMEOUT)
        result = listed.json() if listed.status_code == 200 else {}
        state["records"] = {"posted": posted.status_code, "listed": listed.status_code,
                            "pseudonym": result.get("pseudonym"), "count": len(result.get("records", []))}
        return redirect("/", code=303)

    @app.post("/refresh")
    def refresh() -> Any:
        state = signed_in_state()
        if state is None:
            return redirect("/", code=303)
        answer = http.post(issuer.metadata()["token_endpoint"], timeout=TIMEOUT, data={
            "grant_type": "refresh_token", "refresh_token": state.get("refresh_token") or "",
            "client_id": config.client_id})
        body = answer.json()
        if answer.status_code == 200:
            state.update(access_token=body["access_token"], refresh_token=body.get("refresh_token"))
            state["renewed"] = {"ok": True}
        else:
            state["renewed"] = {"ok": False, "error": body.get("error")}
        return redirect("/", code=303)

    @app.post("/logout")
    def logout() -> Any:
        state = signed_in_state()
        if state is None:
            return redirect("/", code=303)
        id_token = state["id_token"]
        states.forget()
        farewell = secrets.token_urlsafe(16)
        states.current(create=True)["logout_state"] = farewell
        query = urlencode({"id_token_hint": id_token, "client_id": config.client_id,
                           "post_logout_redirect_uri": config.post_logout_redirect_uri, "state": farewell})
        return redirect(f"{issuer.metadata()['end_session_endpoint']}?{query}", code=303)

    @app.get("/signed-out")
    def signed_out() -> Any:
        state = states.current()
        expected = state.pop("logout_state", None) if state is not None else None
        if not same(request.args.get("state"), expected):
            return page("message.html", 400, title="Not our sign-out",
                        message="This answer does not belong to a sign-out started here.")
        return page("message.html", 200, title="Signed out",
                    message="You are signed out of the app and of the identity service.")

    return app
