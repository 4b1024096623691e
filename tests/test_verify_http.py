"""identity.verify.http: the default fetcher against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from identity.verify import ConfigurationError, IssuerUnavailable, RequestsFetcher
from identity.verify.http import require_safe_url

from .verify_support import PSEUDONYM, TokenFactory, make_verifier


class Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[tuple[str, str, str | None, bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        status, headers, payload = self.routes.get(self.path, (404, {}, b"{}"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer  # noqa: N815 - the names http.server calls

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.routes, Handler.seen = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_verifier_fetches_discovery_and_jwks_over_http(server: str):
    factory = TokenFactory(issuer=server)
    Handler.routes["/.well-known/openid-configuration"] = (200, {}, json.dumps(
        {"issuer": server, "jwks_uri": f"{server}/.well-known/jwks.json"}).encode())
    Handler.routes["/.well-known/jwks.json"] = (200, {}, json.dumps(factory.jwks()).encode())
    verifier, _, _ = make_verifier(factory, fetcher=RequestsFetcher(), jwks_uri=None)
    assert verifier.verify(factory.token()).subject == PSEUDONYM
    assert [(m, p) for m, p, _, _ in Handler.seen] == [
        ("GET", "/.well-known/openid-configuration"), ("GET", "/.well-known/jwks.json")]


def test_redirects_are_not_followed(server: str):
    Handler.routes["/jwks"] = (302, {"Location": "https://evil.example.test/jwks"}, b"")
    response = RequestsFetcher().get(f"{server}/jwks")
    assert response.status == 302
    with pytest.raises(IssuerUnavailable):
        response.json_object()


def test_oversized_responses_are_refused(server: str):
    Handler.routes["/big"] = (200, {}, b"x" * 2048)
    with pytest.raises(IssuerUnavailable, match="too large"):
        RequestsFetcher(max_bytes=1024).get(f"{server}/big")


def test_unreachable_issuer_is_issuer_unavailable():
    with pytest.raises(IssuerUnavailable):
        RequestsFetcher(connect_timeout=0.5, read_timeout=0.5).get("http://127.0.0.1:9/nothing")


def test_post_form_sends_basic_credentials(server: str):
    Handler.routes["/introspect"] = (200, {}, b'{"active": true}')
    RequestsFetcher().post_form(f"{server}/introspect", {"token": "t"}, basic_auth=("rs", "pw"))
    method, path, authorization, body = Handler.seen[0]
    assert (method, path, authorization, body) == ("POST", "/introspect", "Basic cnM6cHc=", b"token=t")


@pytest.mark.parametrize("url", ["http://id.example.test/x", "ftp://127.0.0.1/x", "file:///etc/passwd",
                                 "https:///nohost", "javascript:alert(1)", "http://127.0.0.1.evil.example/x"])
def test_unsafe_urls_are_refused(url: str):
    with pytest.raises(ConfigurationError):
        require_safe_url(url, "test URL")


@pytest.mark.parametrize("url", ["https://id.example.test/x", "http://127.0.0.1:5000/x", "http://localhost/x",
                                 "http://[::1]:8080/x"])
def test_safe_urls_are_accepted(url: str):
    assert require_safe_url(url, "test URL") == url
