"""identity.verify.http: the default fetcher against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest

from identity.verify import ClientCredentials, ConfigurationError, HttpResponse, IssuerUnavailable, RequestsFetcher
from identity.verify.http import require_safe_url

from .verify_support import PSEUDONYM, TokenFactory, make_verifier

#: what a raw server does with one accepted connection, after reading the request head
Responder = Callable[[socket.socket], None]


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


@pytest.fixture
def raw_server() -> Iterator[Callable[[Responder], str]]:
    """A loopback socket answering each connection by hand (``serve(responder)`` → its URL), for answers
    ``http.server`` will not give: a body dripped a byte at a time, cut short, or mis-encoded."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    responders: list[Responder] = []

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096) or b"\r\n\r\n"
                try:
                    responders[0](conn)
                except OSError:
                    pass  # the client gave up on us: what these tests want

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def serve(responder: Responder) -> str:
        responders[:] = [responder]
        return f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json"

    yield serve
    stop.set()
    thread.join(5)
    listener.close()


def head(length: int, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {length}", *extra, "", ""]
    return "\r\n".join(lines).encode("ascii")


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
                                 "https:///nohost", "javascript:alert(1)", "http://127.0.0.1.evil.example/x",
                                 "https://[bad", "http://[::1/x"])
def test_unsafe_urls_are_refused(url: str):
    with pytest.raises(ConfigurationError):
        require_safe_url(url, "test URL")


@pytest.mark.parametrize("url", ["https://id.example.test/x", "http://127.0.0.1:5000/x", "http://localhost/x",
                                 "http://[::1]:8080/x"])
def test_safe_urls_are_accepted(url: str):
    assert require_safe_url(url, "test URL") == url


def test_a_body_dripped_byte_by_byte_hits_the_total_deadline(raw_server):
    """Each byte arrives well within the read timeout, but the whole answer would take 3 s."""
    body = json.dumps({"keys": [], "padding": "x" * 40}).encode()

    def drip(conn: socket.socket) -> None:
        conn.sendall(head(len(body)))
        for i in range(len(body)):
            conn.sendall(body[i:i + 1])
            time.sleep(3 / len(body))

    url = raw_server(drip)
    started = time.monotonic()
    with pytest.raises(IssuerUnavailable, match="too long"):
        RequestsFetcher(read_timeout=1, total_timeout=0.5).get(url)
    assert time.monotonic() - started < 2


def test_a_total_timeout_must_be_positive():
    with pytest.raises(ConfigurationError):
        RequestsFetcher(total_timeout=0)


def _truncated(conn: socket.socket) -> None:
    conn.sendall(head(1000) + b'{"active": true')


def _not_gzip(conn: socket.socket) -> None:
    conn.sendall(head(23, "Content-Encoding: gzip") + b"this is not gzip at all")


def _stalled(conn: socket.socket) -> None:
    conn.sendall(head(1000) + b'{"active"')
    time.sleep(1.5)


@pytest.mark.parametrize("responder", [_truncated, _not_gzip, _stalled], ids=["truncated", "not-gzip", "stalled"])
def test_errors_while_reading_the_body_are_issuer_unavailable(raw_server, responder: Responder):
    """urllib3 raises ProtocolError, DecodeError and ReadTimeoutError from the body, none a requests error."""
    url = raw_server(responder)
    fetcher = RequestsFetcher(read_timeout=0.5)
    with pytest.raises(IssuerUnavailable):
        fetcher.get(url)
    with pytest.raises(IssuerUnavailable):
        fetcher.post_form(url, {"token": "t"}, basic_auth=("rs", "pw"))


def test_a_truncated_introspection_answer_is_issuer_unavailable_not_a_crash(raw_server):
    factory = TokenFactory()

    class JwksFromMemory(RequestsFetcher):  # introspection goes over the socket
        def get(self, url: str) -> HttpResponse:
            return HttpResponse(200, json.dumps(factory.jwks()).encode())

    verifier, _, _ = make_verifier(factory, fetcher=JwksFromMemory(read_timeout=0.5),
                                   introspection=ClientCredentials("rs", "pw"),
                                   introspection_endpoint=raw_server(_truncated))
    with pytest.raises(IssuerUnavailable):
        verifier.verify(factory.token(), introspect=True)


def test_deeply_nested_json_is_issuer_unavailable():
    with pytest.raises(IssuerUnavailable, match="not JSON"):
        HttpResponse(200, b"[" * 100_000).json_object()
