"""The back channel's transport (``identity/upstream/transport.py``) over real sockets on 127.0.0.1.

One deadline for a whole call (an answer trickling in a byte at a time is given up on), a 1 MiB cap on
answers (declared, chunked or compressed), no redirects (not to plain http, not to loopback), and https
for every URL requested in production; then the same through the broker, where each ends the login as
``temporarily_unavailable`` and never holds a worker.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import requests

from identity import create_app
from identity.devidp import DevIdP, DevIdPConfig
from identity.store import SQLiteStore
from identity.upstream import UpstreamBroker, WsgiTransport, callback_url
from identity.upstream.transport import (
    MAX_ANSWER_BYTES,
    AnswerTooLarge,
    InsecureUpstreamURL,
    RedirectRefused,
    UpstreamSession,
    UpstreamTimeout,
)
from tests.conftest import REDIRECT_URI
from tests.oauth_helpers import pkce_pair, query_of
from tests.upstream_fixtures import (  # noqa: F401
    UPSTREAM,
    UPSTREAM_CLIENT_ID,
    UPSTREAM_SECRET,
    broker_app,
    broker_browser,
    broker_client,
    register_app_client,
    tampering,
    upstream_config,
    upstream_idp,
)
from tests.upstream_support import Browser, LiveServer, authorization_url, log_in

ISSUER = "https://id.example.test"
TIMEOUT = 0.5  # IDENTITY_UPSTREAM_TIMEOUT in these tests
GIVE_UP = 10.0  # how long a test waits for a call that should have ended after about TIMEOUT


class TricklingServer:
    """Answers every connection with an HTTP 200 head, then one body byte every ``gap`` seconds (well within any
    per-read timeout) for up to ``for_seconds``. Counts the connections."""

    def __init__(self, gap: float = 0.05, for_seconds: float = 6.0) -> None:
        self.gap, self.for_seconds = gap, for_seconds
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        ends = time.monotonic() + self.for_seconds
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            while not self._stop.is_set() and time.monotonic() < ends:
                time.sleep(self.gap)
                conn.sendall(b" ")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def within(seconds: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()``'s result (or the exception it raised) and how long it took; fails if it is still running after
    ``seconds`` (a test without the deadline would otherwise hang)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            outcome["result"] = call()
        except Exception as exc:  # noqa: BLE001 - handed to the test, which names what it expects
            outcome["result"] = exc
        outcome["took"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the call was still waiting after {seconds}s (timeout {TIMEOUT}s)"
    return outcome["result"], outcome["took"]


def session(*, require_https: bool = False, timeout: float = TIMEOUT) -> UpstreamSession:
    return UpstreamSession(client_id="c", default_timeout=timeout, require_https=require_https)


def get(url: str, **options: Any) -> requests.Response:
    with session(**options) as back_channel:
        return back_channel.request("GET", url, withhold_token=True)


def wsgi_json(body: bytes, *, headers: list[tuple[str, str]] | None = None, status: str = "200 OK",
              declare_length: bool = True) -> Callable[..., Any]:
    sent_headers = [("Content-Type", "application/json"), *(headers or [])]
    if declare_length:
        sent_headers.append(("Content-Length", str(len(body))))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response(status, sent_headers)
        return iter([body[i:i + 65536] for i in range(0, len(body), 65536)])  # sent as it is produced
    return app


# -- the session alone ------------------------------------------------------------------------------

def test_an_answer_trickling_in_is_given_up_at_the_deadline():
    server = TricklingServer()
    try:
        outcome, took = within(GIVE_UP, lambda: get(server.url + "/jwks"))
    finally:
        server.close()
    assert isinstance(outcome, UpstreamTimeout) and isinstance(outcome, requests.Timeout), outcome
    assert took < 3 * TIMEOUT  # the deadline, plus at most one socket read


def test_an_ordinary_answer_is_read_whole_and_a_compressed_one_decoded():
    document = {"keys": [{"kty": "EC", "kid": "k1"}], "pad": "x" * 5000}
    compressed = gzip.compress(json.dumps(document).encode())
    with LiveServer(wsgi_json(json.dumps(document).encode())) as plain:
        assert get(plain.url + "/jwks").json() == document
    with LiveServer(wsgi_json(compressed, headers=[("Content-Encoding", "gzip")])) as packed:
        assert get(packed.url + "/jwks").json() == document


def test_an_answer_of_exactly_the_cap_is_accepted():
    body = json.dumps({"pad": "x" * (MAX_ANSWER_BYTES - 11)}).encode()
    assert len(body) == MAX_ANSWER_BYTES
    with LiveServer(wsgi_json(body, declare_length=False)) as server:
        assert len(get(server.url + "/jwks").content) == MAX_ANSWER_BYTES


@pytest.mark.parametrize("how", ["declared", "chunked", "gzip_bomb"])
def test_an_answer_over_one_mib_is_refused(how):
    big = json.dumps({"keys": [], "pad": "x" * (8 * MAX_ANSWER_BYTES)}).encode()
    app = {
        "declared": wsgi_json(big),  # refused on its Content-Length, unread
        "chunked": wsgi_json(big, declare_length=False),  # counted while read
        "gzip_bomb": wsgi_json(gzip.compress(big), headers=[("Content-Encoding", "gzip")]),  # 8 KiB sent, 8 MiB decoded
    }[how]
    with LiveServer(app) as server:
        outcome, _ = within(GIVE_UP, lambda: get(server.url + "/jwks"))
    assert isinstance(outcome, AnswerTooLarge), outcome


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", ["http_loopback", "https"])
def test_a_redirect_is_refused_and_not_followed(status, target):
    hits: list[str] = []

    def inside(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        hits.append(environ["PATH_INFO"])
        return wsgi_json(b'{"keys": []}')(environ, start_response)

    with LiveServer(inside) as internal:
        location = {"http_loopback": internal.url + "/latest/meta-data",
                    "https": "https://elsewhere.example.test/jwks"}[target]
        redirecting = wsgi_json(b"", status=f"{status} Moved", headers=[("Location", location)])
        with LiveServer(redirecting) as idp:
            outcome, _ = within(GIVE_UP, lambda: get(idp.url + "/jwks"))
    assert isinstance(outcome, RedirectRefused), outcome
    assert hits == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/.well-known/openid-configuration",
                                 "http://127.0.0.1:{port}/jwks", "https://[127.0.0.1:{port}/jwks", "/jwks"])
def test_where_https_is_required_nothing_else_is_requested(url):
    with LiveServer(wsgi_json(b'{"keys": []}')) as server:
        port = urlsplit(server.url).port
        with pytest.raises(InsecureUpstreamURL):
            get(url.format(port=port), require_https=True)
        with session(require_https=True) as back_channel, pytest.raises(InsecureUpstreamURL):
            back_channel.post(f"http://127.0.0.1:{port}/token", data={"grant_type": "authorization_code"})
        assert get(server.url + "/jwks").json() == {"keys": []}  # the same URL, where http is allowed


# -- through the broker -----------------------------------------------------------------------------

def test_a_trickling_provider_holds_no_page_and_no_login(settings, audience_keys, caplog):
    server = TricklingServer()
    try:
        broker = UpstreamBroker(upstream_config(settings, issuer=server.url, timeout=TIMEOUT, require_https=False))
        app = create_app(settings, login_broker=broker)
        client = register_app_client(app, audience_keys)
        account, took = within(GIVE_UP, lambda: app.test_client().get("/account", base_url=ISSUER))
        assert account.status_code == 200 and took < 3 * TIMEOUT
        _, challenge = pkce_pair()
        url = authorization_url(ISSUER, client.client_id, REDIRECT_URI, challenge)
        started, took = within(GIVE_UP, lambda: app.test_client().get(url[len(ISSUER):], base_url=ISSUER))
    finally:
        server.close()
    assert took < 3 * TIMEOUT
    assert query_of(started.headers["Location"])["error"] == "temporarily_unavailable"
    assert [r.reason for r in caplog.records if r.getMessage() == "upstream login failed"] == [
        "discovery_UpstreamTimeout"]
    app.extensions["identity"].store.close()


class RedirectingJwks:
    """The provider, except that ``/jwks`` answers 302 to ``target``."""

    def __init__(self, idp_app: Callable[..., Any], target: str) -> None:
        self.app, self.target = idp_app, target

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/jwks":
            start_response("302 Found", [("Location", self.target), ("Content-Length", "0")])
            return [b""]
        return self.app(environ, start_response)


def test_a_production_provider_redirecting_to_plain_http_on_loopback_is_not_followed(settings, audience_keys,
                                                                                     tmp_path):
    store = SQLiteStore(tmp_path / "idp.sqlite3")
    idp = DevIdP(DevIdPConfig(issuer=UPSTREAM, client_id=UPSTREAM_CLIENT_ID, client_secret=UPSTREAM_SECRET,
                              redirect_uris=(callback_url(settings.issuer),), secret=os.urandom(32)), store=store)
    hits: list[str] = []

    def internal(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:  # e.g. a metadata service
        hits.append(environ["PATH_INFO"])
        return wsgi_json(json.dumps(idp.keys.jwks()).encode())(environ, start_response)

    with LiveServer(internal) as inside:
        upstream = RedirectingJwks(idp.app, inside.url + "/latest/meta-data")
        broker = UpstreamBroker(upstream_config(settings, require_https=True),
                                mounts={UPSTREAM + "/": WsgiTransport(upstream, UPSTREAM)})
        app = create_app(settings, login_broker=broker)
        client = register_app_client(app, audience_keys)
        browser = Browser({"id.example.test": app, "upstream.example.test": upstream}, stop_at=REDIRECT_URI)
        result = log_in(browser, ISSUER, client.client_id, REDIRECT_URI, "erin@example.org")
    store.close()
    app.extensions["identity"].store.close()
    assert hits == []
    assert result.params["error"] == "temporarily_unavailable" and "code" not in result.params


def test_a_jwks_over_one_mib_ends_the_login_unavailable(settings, audience_keys, tmp_path):
    store = SQLiteStore(tmp_path / "idp.sqlite3")
    with LiveServer() as server:
        idp = DevIdP(DevIdPConfig(issuer=server.url, client_id=UPSTREAM_CLIENT_ID, client_secret=UPSTREAM_SECRET,
                                  redirect_uris=(callback_url(settings.issuer),), secret=os.urandom(32)), store=store)

        def huge_jwks(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ["PATH_INFO"] != "/jwks":
                return idp.app(environ, start_response)
            padded = {**idp.keys.jwks(), "padding": "x" * (64 * MAX_ANSWER_BYTES)}
            return wsgi_json(json.dumps(padded).encode(), declare_length=False)(environ, start_response)

        server.app = huge_jwks
        broker = UpstreamBroker(upstream_config(settings, issuer=server.url, require_https=False))
        app = create_app(settings, login_broker=broker)
        client = register_app_client(app, audience_keys)
        browser = Browser({"id.example.test": app, urlsplit(server.url).netloc: huge_jwks}, stop_at=REDIRECT_URI)
        result = log_in(browser, ISSUER, client.client_id, REDIRECT_URI, "frank@example.org")
    store.close()
    app.extensions["identity"].store.close()
    assert result.params["error"] == "temporarily_unavailable" and "code" not in result.params


def test_every_back_channel_call_of_a_production_broker_requires_https(broker_browser, broker_client, monkeypatch):
    """``broker_app`` is configured as for production (``require_https``): discovery, token and JWKS all check."""
    calls: list[tuple[str, bool]] = []
    original = UpstreamSession.request

    def spy(self: UpstreamSession, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        calls.append((urlsplit(url).path, self.require_https))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(UpstreamSession, "request", spy)
    result = log_in(broker_browser, ISSUER, broker_client.client_id, REDIRECT_URI, "gina@example.org")
    assert "code" in result.params
    assert sorted(calls) == [("/.well-known/openid-configuration", True), ("/jwks", True), ("/token", True)]
