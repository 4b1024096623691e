"""Request smuggling: gunicorn with the repository's ``gunicorn.conf.py`` refuses ambiguous HTTP framing.

A proxy in front and gunicorn behind must agree where one request ends. Each request below is one that
some HTTP parsers read differently (the classic CL.TE and TE.CL desyncs, a second Content-Length, bare-LF
line endings, obsolete line folding, a NUL or a space in a header); the production settings must answer
each with 400 and never run the request, so no token is issued for it. A faster parser that is more lenient
would fail here (gunicorn.conf.py says why gunicorn-h1c is not used).
"""

from __future__ import annotations

import socket

import pytest

from tests.security.live import Gunicorn, deploy

pytestmark = pytest.mark.slow

BODY = b"grant_type=client_credentials&scope=records%3Aread"

CT = b"Content-Type: application/x-www-form-urlencoded"
CL = b"Content-Length: %d" % len(BODY)


def post(*headers: bytes, body: bytes = BODY, eol: bytes = b"\r\n") -> bytes:
    """``POST /token`` with ``headers`` after Host, lines ended by ``eol``, then ``body``."""
    return eol.join([b"POST /token HTTP/1.1", b"Host: id", *headers]) + eol + eol + body


AMBIGUOUS = {
    "content-length and transfer-encoding": post(b"Content-Length: 4", b"Transfer-Encoding: chunked",
                                                  body=b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: id\r\n\r\n"),
    "two different content-lengths": post(b"Content-Length: 5", CL, CT),
    "bare LF line endings": post(CT, CL, eol=b"\n"),
    "obsolete line folding": post(b"X-Note: a", b" Content-Length: 0", CT, CL),
    "space before the colon": post(b"Content-Length : %d" % len(BODY), CT),
    "NUL in a header value": post(b"X-Note: a\x00b", CL, CT),
    "signed content-length": post(b"Content-Length: +%d" % len(BODY), CT),
    "chunked is not the last coding": post(b"Transfer-Encoding: chunked, identity", CT,
                                            body=b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"),
}


def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


@pytest.fixture(scope="module")
def production_http(tmp_path_factory, key_template):
    deployment = deploy(tmp_path_factory.mktemp("http"), key_template)
    with Gunicorn(deployment, workers=1, threads=1, repository_config=True) as server:
        yield server


def test_the_production_settings_serve_a_well_formed_request(production_http):
    answer = exchange(production_http.deployment.port,
                      b"GET /healthz HTTP/1.1\r\nHost: id\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_ambiguous_framing_is_refused_before_the_app_sees_it(production_http, name):
    answer = exchange(production_http.deployment.port, AMBIGUOUS[name])
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400 ") or status_line.startswith(b"HTTP/1.1 501 "), (name, status_line)
    assert b"access_token" not in answer and answer.count(b"HTTP/1.1 ") == 1, name
