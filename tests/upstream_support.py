"""Helpers for the upstream login tests: a WSGI 'browser', the dev IdP's form, a tampering IdP, a live server."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import Client, TestResponse

from identity.devidp import DevIdP
from tests.oauth_helpers import pkce_pair, query_of

WSGIApp = Callable[..., Any]


class HostDispatcher:
    """Routes each request to the WSGI app for its host (several 'sites' for one test client)."""

    def __init__(self, sites: Mapping[str, WSGIApp]) -> None:
        self.sites = dict(sites)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        app = self.sites.get(environ.get("HTTP_HOST", ""))
        if app is None:
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [b"no such site in this test"]
        return app(environ, start_response)


@dataclass
class Page:
    url: str
    response: TestResponse

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def text(self) -> str:
        return self.response.get_data(as_text=True)

    @property
    def query(self) -> dict[str, str]:
        return query_of(self.url)


class Browser:
    """Keeps cookies per host, follows redirects, and stops when a redirect leaves for ``stop_at``."""

    def __init__(self, sites: Mapping[str, WSGIApp], *, stop_at: str) -> None:
        self.client = Client(HostDispatcher(sites))
        self.stop_at = stop_at
        self.set_cookies: list[str] = []
        self.hops: list[str] = []

    def get(self, url: str) -> Page:
        return self._follow(url, self._open(url, "GET"))

    def post(self, url: str, data: Mapping[str, str]) -> Page:
        return self._follow(url, self._open(url, "POST", data=dict(data)))

    def _open(self, url: str, method: str, data: dict[str, str] | None = None) -> TestResponse:
        self.hops.append(url)
        parts = urlsplit(url)
        response = self.client.open(parts.path, base_url=f"{parts.scheme}://{parts.netloc}",
                                    query_string=parts.query, method=method, data=data)
        self.set_cookies.extend(response.headers.getlist("Set-Cookie"))
        return response

    def _follow(self, url: str, response: TestResponse) -> Page:
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                return Page(url, response)
            location = response.headers["Location"]
            if location.startswith("/"):
                parts = urlsplit(url)
                location = f"{parts.scheme}://{parts.netloc}{location}"
            if location.startswith(self.stop_at):
                self.hops.append(location)
                return Page(location, response)
            url, response = location, self._open(location, "GET")
        raise AssertionError("too many redirects")


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.email_input: dict[str, str | None] = {}
        self._label_for: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form":
            self.action = attr.get("action")
        elif tag == "input" and attr.get("type") == "hidden":
            self.fields[attr["name"] or ""] = attr.get("value") or ""
        elif tag == "input" and attr.get("name") == "email":
            self.email_input = attr
        elif tag == "label":
            self._label_for = attr.get("for")

    def handle_data(self, data: str) -> None:
        if self._label_for and data.strip():
            self.labels[self._label_for] = data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_for = None


def parse_form(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    return parser


def submit_login(browser: Browser, form_page: Page, email: str, *, action: str = "sign-in",
                 overrides: Mapping[str, str] | None = None) -> Page:
    """Fill in the dev IdP's form like a person would and press a button."""
    form = parse_form(form_page.text)
    assert form.action, form_page.text
    parts = urlsplit(form_page.url)
    target = form.action if "://" in form.action else f"{parts.scheme}://{parts.netloc}{form.action}"
    return browser.post(target, {**form.fields, "email": email, "action": action, **(overrides or {})})


def authorization_url(issuer: str, client_id: str, redirect_uri: str, challenge: str, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "app-state",
              "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid", "nonce": "app-nonce",
              **extra}
    return f"{issuer}/authorize?{urlencode(params)}"


@dataclass
class LoginResult:
    page: Page
    verifier: str

    @property
    def params(self) -> dict[str, str]:
        return self.page.query


def log_in(browser: Browser, issuer: str, client_id: str, redirect_uri: str, email: str) -> LoginResult:
    """The whole front channel: the app's authorization URL → IdP form → the app's redirect URI."""
    verifier, challenge = pkce_pair()
    form_page = browser.get(authorization_url(issuer, client_id, redirect_uri, challenge))
    assert form_page.status == 200, form_page.text
    return LoginResult(submit_login(browser, form_page, email), verifier)


def decode_segment(token: str, index: int = 1) -> dict[str, Any]:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


Tamper = Callable[[dict[str, Any], dict[str, Any]], str]


@dataclass
class TamperingIdP:
    """Wraps a dev IdP (a WSGI app): rewrites the token endpoint's ID token with ``tamper(header, claims)``,
    answers ``replies[path] = (status, body)`` instead of the IdP, or sleeps ``delays[path]`` seconds first."""

    idp: DevIdP
    tamper: Tamper | None = None
    replies: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        self.requests.append(path)
        if path in self.delays:
            time.sleep(self.delays[path])
        if path in self.replies:
            status, body = self.replies[path]
            content_type = "application/json" if body.startswith(b"{") else "text/html"
            start_response(f"{status} Test", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return iter([body])
        if path != "/token" or self.tamper is None:
            return self.idp.app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = json.loads(b"".join(self.idp.app(environ, capture)))
        if "id_token" in body:
            token = body["id_token"]
            body["id_token"] = self.tamper(decode_segment(token, 0), decode_segment(token, 1))
        data = json.dumps(body).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(data)))])
        return iter([data])

    def sign(self, header: dict[str, Any], claims: dict[str, Any], key: ECKey | None = None) -> str:
        """Sign with the IdP's active key (or ``key``): what a genuine token with these claims looks like."""
        key = key or self.idp.keys.active
        return jwt.encode({**header, "kid": header.get("kid", key.kid)}, claims, key)

    def count(self, path: str) -> int:
        return self.requests.count(path)


class LiveServer:
    """A real HTTP server on 127.0.0.1 (random port) in a thread; the app can be set after binding."""

    def __init__(self, app: WSGIApp | None = None) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.app is not None, "LiveServer.app is not set"
        return self.app(environ, start_response)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
