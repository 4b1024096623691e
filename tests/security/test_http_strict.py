"""``identity.web.http_strict.StrictHttp`` in-process: each refusal, and what it lets through unchanged.

tests/security/test_http_parsing.py sends the same requests over real sockets to ``scripts/serve.py``.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from identity.web.http_strict import MAX_TARGET, StrictHttp


def environ(**overrides: Any) -> dict[str, Any]:
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "id.example.org", "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "https"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Server", "Werkzeug/3")])
        return [b"ok"]


def call(env: dict[str, Any]) -> tuple[str, dict[str, str], bytes, Recorder]:
    app = Recorder()
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, headers

    body = b"".join(StrictHttp(app, https=True)(env, start_response))
    names = [name.lower() for name, _ in seen["headers"]]
    assert names.count("server") == 1, seen["headers"]
    return seen["status"], dict(seen["headers"]), body, app


@pytest.mark.parametrize("overrides, status", [
    ({"HTTP_TRANSFER_ENCODING": "chunked", "REQUEST_METHOD": "POST"}, "411"),
    ({"HTTP_TRANSFER_ENCODING": "identity", "CONTENT_LENGTH": "4", "REQUEST_METHOD": "POST"}, "411"),
    ({"REQUEST_METHOD": "get"}, "501"),
    ({"REQUEST_METHOD": "PURGE"}, "501"),
    ({"REQUEST_METHOD": "TRACE"}, "501"),
    ({"HTTP_HOST": "a,b"}, "400"),
    ({"HTTP_HOST": "a b"}, "400"),
    ({"HTTP_HOST": "user@evil.example"}, "400"),
    ({"HTTP_HOST": None}, "400"),
    ({"HTTP_HOST": ""}, "400"),
    ({"QUERY_STRING": "a" * MAX_TARGET}, "414"),
    ({"PATH_INFO": "/" + "a" * MAX_TARGET}, "414"),
    ({"CONTENT_LENGTH": "+5", "REQUEST_METHOD": "POST"}, "400"),
])
def test_refused_before_the_app_with_connection_close_and_security_headers(overrides, status):
    got, headers, body, app = call(environ(**overrides))
    assert got.startswith(status + " ") and app.calls == 0
    assert headers["Connection"] == "close" and headers["Server"] == "identity"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Strict-Transport-Security"]
    assert b'"error": "invalid_request"' in body


@pytest.mark.parametrize("overrides", [
    {},
    {"HTTP_HOST": "127.0.0.1:8000"},
    {"HTTP_HOST": "[::1]:8000"},
    {"SERVER_PROTOCOL": "HTTP/1.0", "HTTP_HOST": None},
    {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "12"},
    {"REQUEST_METHOD": "HEAD"},
    {"QUERY_STRING": "a" * (MAX_TARGET - 100)},
])
def test_ordinary_requests_reach_the_app_and_leave_with_a_neutral_server_header(overrides):
    got, headers, body, app = call(environ(**overrides))
    assert got == "200 OK" and body == b"ok" and app.calls == 1
    assert headers["Server"] == "identity"  # the app's (or granian's) own never leaves
