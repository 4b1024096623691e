"""HTTP hardening: security headers on every kind of response, a strict CSP on HTML, HSTS under https,
no-store on token responses, CORS closed on the authorization endpoint, size limits, no server banner."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import socket
from typing import Any

import pytest

from identity import create_app
from identity.web.headers import MAX_HEADER_VALUE, MAX_QUERY_STRING, RequestSizeLimits
from identity.web.telemetry import RequestTelemetry
from identity.web.token_fast_path import TokenFastPath
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import pkce_pair
from tests.test_oauth_flow import basic

from .live import Gunicorn, deploy

EVIL_ORIGIN = "https://evil.example"
CLIENT_CREDENTIALS = {"grant_type": "client_credentials", "resource": API}


def assert_hardened(response) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "script-src" not in csp
    assert "Server" not in headers and "X-Powered-By" not in headers


def authorize_params(app_client, **extra):
    _, challenge = pkce_pair()
    return {"response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid", **extra}


def test_every_kind_of_response_is_hardened(oauth_client, public_app, service_client):
    rs, secret = service_client
    responses = [
        oauth_client.get("/healthz"), oauth_client.get("/readyz"), oauth_client.get("/.well-known/jwks.json"),
        oauth_client.get("/.well-known/openid-configuration"),
        oauth_client.get("/authorize", query_string=authorize_params(public_app)),  # redirect
        oauth_client.get("/authorize", query_string={"client_id": "nope"}),  # HTML error page
        oauth_client.post("/token", data=CLIENT_CREDENTIALS, headers=basic(rs.client_id, secret)),
        oauth_client.post("/token", data={"grant_type": "password"}),  # JSON error
        oauth_client.get("/token"),  # 405
        oauth_client.get("/no/such/page"),  # 404
        oauth_client.get("/me"),  # 401
        oauth_client.post("/token", data="x=" + "a" * 70_000, content_type="application/x-www-form-urlencoded"),
    ]
    for response in responses:
        assert response.status_code < 500
        assert_hardened(response)


def test_html_pages_allow_only_their_own_inline_style_by_hash(oauth_client):
    page = oauth_client.get("/authorize", query_string={"client_id": "nope"})
    assert page.mimetype == "text/html" and page.status_code == 400
    csp = page.headers["Content-Security-Policy"]
    styles = re.findall(r"<style[^>]*>(.*?)</style>", page.get_data(as_text=True), re.DOTALL)
    assert styles, "the error page has its inline style"
    for style in styles:
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "style-src 'sha256-" in csp and "form-action 'self'" in csp
    assert "<script" not in page.get_data(as_text=True)


def test_json_responses_get_the_strictest_policy(oauth_client):
    csp = oauth_client.get("/healthz").headers["Content-Security-Policy"]
    assert csp == "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def test_hsts_only_when_the_issuer_is_https(settings, oauth_client):
    assert oauth_client.get("/healthz").headers["Strict-Transport-Security"].startswith("max-age=31536000")
    plain = create_app(dataclasses.replace(settings, issuer="http://127.0.0.1:5000"))
    try:
        assert "Strict-Transport-Security" not in plain.test_client().get("/healthz").headers
    finally:
        plain.extensions["identity"].store.close()


def test_token_responses_are_never_cached(oauth_client, public_app, service_client):
    rs, secret = service_client
    for response in (
        oauth_client.post("/token", data=CLIENT_CREDENTIALS, headers=basic(rs.client_id, secret)),
        oauth_client.post("/token", data={"grant_type": "client_credentials"}, headers=basic(rs.client_id, "x")),
        oauth_client.post("/introspect", data={"token": "x"}, headers=basic(rs.client_id, secret)),
        oauth_client.post("/revoke", data={"token": "x"}, headers=basic(rs.client_id, secret)),
        oauth_client.get("/authorize", query_string=authorize_params(public_app)),
    ):
        assert response.headers["Cache-Control"] == "no-store", response.status_code
    ok = oauth_client.post("/token", data=CLIENT_CREDENTIALS, headers=basic(rs.client_id, secret))
    assert ok.status_code == 200 and ok.headers["Pragma"] == "no-cache"


def test_responses_about_a_person_tell_http_1_0_caches_too(oauth_client, public_app):
    """One ``no_store`` (``identity.web.headers``): ``Cache-Control: no-store`` and ``Pragma: no-cache``."""
    for response in (
        oauth_client.get("/authorize", query_string=authorize_params(public_app)),
        oauth_client.get("/me/email/change"),
        oauth_client.get("/account"),
        oauth_client.get("/readyz"),
    ):
        assert response.headers["Cache-Control"] == "no-store", response.request.path
        assert response.headers["Pragma"] == "no-cache", response.request.path


def test_public_documents_stay_cacheable(oauth_client):
    assert oauth_client.get("/.well-known/jwks.json").headers["Cache-Control"] == "public, max-age=300"
    assert oauth_client.get("/.well-known/openid-configuration").headers["Cache-Control"] == "public, max-age=300"


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
def test_cors_is_closed_on_the_authorization_and_token_endpoints(oauth_client, public_app, method):
    preflight = {"Origin": EVIL_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    for path in ("/authorize", "/token", "/introspect", "/revoke", "/me"):
        response = oauth_client.open(path, method=method, headers=preflight,
                                     query_string=authorize_params(public_app) if path == "/authorize" else None)
        assert response.status_code < 500
        assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")], (path, method)
    # discovery alone is public (RFC 8414 clients in browsers may read it), with no credentials
    metadata = oauth_client.get("/.well-known/openid-configuration", headers={"Origin": EVIL_ORIGIN})
    assert metadata.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in metadata.headers


def test_oversized_request_lines_headers_and_bodies_are_refused(oauth_client, public_app):
    long_query = oauth_client.get("/authorize?state=" + "s" * (MAX_QUERY_STRING + 1))
    assert long_query.status_code == 414 and long_query.json["error"] == "invalid_request"
    big_header = oauth_client.get("/healthz", headers={"X-Filler": "h" * (MAX_HEADER_VALUE + 1)})
    assert big_header.status_code == 431
    many_headers = oauth_client.get("/healthz", headers={f"X-F{i}": "h" * 4000 for i in range(10)})
    assert many_headers.status_code == 431
    huge_token = oauth_client.get("/me", headers={"Authorization": "Bearer " + "a" * (MAX_HEADER_VALUE + 1)})
    assert huge_token.status_code == 431
    body = oauth_client.post("/token", data="grant_type=" + "x" * 70_000,
                             content_type="application/x-www-form-urlencoded")
    assert body.status_code == 413
    for response in (long_query, big_header, many_headers, huge_token, body):
        assert_hardened(response)
        assert response.headers["Cache-Control"] == "no-store"
    # just under the limits still works
    assert oauth_client.get("/healthz", headers={"X-Filler": "h" * (MAX_HEADER_VALUE - 100)}).status_code == 200


@pytest.mark.parametrize("name", ["HTTP_X_FILLER", "CONTENT_TYPE", "HOME"])
def test_the_size_limits_check_every_header_whatever_the_process_environment_holds(monkeypatch, name):
    """The limits skip the process environment's keys (granian copies them into every environ) at C speed,
    but never a header: a header named like an environment variable is still measured."""
    monkeypatch.setenv(name, "set in the process environment")
    monkeypatch.setenv("SOME_HUGE_SETTING", "e" * 40_000)  # not a header: never counted
    limits = RequestSizeLimits(lambda environ, start_response: [b"passed"], https=False)
    statuses: list[str] = []

    def call(environ):
        return b"".join(limits({**os.environ, "REQUEST_METHOD": "GET", "PATH_INFO": "/", **environ},
                               lambda status, headers: statuses.append(status)))

    assert call({}) == b"passed"
    header = name if name.startswith(("HTTP_", "CONTENT_")) else "HTTP_HOME"
    call({header: "h" * (MAX_HEADER_VALUE + 1)})
    assert statuses == ["431 Request Header Fields Too Large"]


def wsgi_layers(app) -> list[object]:
    """The app's WSGI wrappers, outermost first (each keeps the next one as ``_next``)."""
    layers, layer = [], app.wsgi_app
    while layer is not None:
        layers.append(layer)
        layer = getattr(layer, "_next", None)
    return layers


FORM = "application/x-www-form-urlencoded"
OVERSIZED: dict[str, tuple[dict[str, Any], int]] = {
    "a 20 KB header": ({"headers": {"X-Filler": "h" * 20_000}}, 431),
    "a 20 KB Content-Type": ({"content_type": FORM + "; x=" + "h" * 20_000}, 431),
    "a 9 KB query string": ({"query_string": "q=" + "s" * 9 * 1024}, 414),
    "a 70 KB body": ({"data": "token=" + "b" * 70_000}, 413),
}


@pytest.mark.parametrize("app_fixture", ["oauth_app", "limited_app"])
@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_size_limits_answer_the_token_endpoint_exactly_like_every_other_route(request, app_fixture, case):
    """POST /token has a fast path of its own: the limits sit outside it (and the rate limits), not after."""
    app = request.getfixturevalue(app_fixture)
    client = app.test_client()
    rs, secret = app.extensions["identity"].oauth.clients.register(
        name="Backend", public=False, redirect_uris=[], grant_types=None, scopes=["records:read"], audiences=[API])
    kwargs, status = OVERSIZED[case]
    kwargs = {"content_type": FORM, **kwargs, "headers": {**basic(rs.client_id, secret), **kwargs.get("headers", {})}}
    if "data" not in kwargs:
        kwargs["data"] = {"grant_type": "client_credentials", "resource": API}
    answers = {path: client.post(path, **kwargs) for path in ("/token", "/revoke", "/introspect")}
    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, status)
    assert answers["/token"].json == answers["/revoke"].json == answers["/introspect"].json
    for response in answers.values():
        assert_hardened(response)
        assert response.headers["Cache-Control"] == "no-store"
    # the same request within bounds is served by the token endpoint's fast path
    fine = client.post("/token", data={"grant_type": "client_credentials", "resource": API},
                       headers=basic(rs.client_id, secret))
    assert fine.status_code == 200
    fast_path = next(layer for layer in wsgi_layers(app) if isinstance(layer, TokenFastPath))
    assert fast_path.enabled is True


@pytest.mark.parametrize("app_fixture", ["oauth_app", "limited_app"])
def test_the_size_limits_are_outermost_but_for_the_request_log(request, app_fixture):
    layers = wsgi_layers(request.getfixturevalue(app_fixture))
    assert isinstance(layers[0], RequestTelemetry) and isinstance(layers[1], RequestSizeLimits)
    assert sum(isinstance(layer, RequestSizeLimits) for layer in layers) == 1


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in b"".join(chunks):
                break
    return b"".join(chunks)


@pytest.mark.slow
def test_gunicorn_sends_no_server_banner_or_version(tmp_path, key_template, audience_keys):
    deployment = deploy(tmp_path, key_template, audience_key=audience_keys[API].public_pem)
    with Gunicorn(deployment, workers=1, threads=1):
        for request in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        b"GET /authorize?client_id=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
            head = raw_request(deployment.port, request).split(b"\r\n\r\n", 1)[0].decode("latin-1")
            assert not re.search(r"(?im)^server:", head), head
            assert "gunicorn" not in head.lower() and "werkzeug" not in head.lower() and "python" not in head.lower()
        # gunicorn's own refusal of a malformed request names no software or version either
        answer = raw_request(deployment.port, b"GARBAGE\r\n\r\n").decode("latin-1")
        assert answer.startswith("HTTP/1.1 400") and "gunicorn" not in answer.lower()
        # an oversized header is refused by gunicorn before the app (limit_request_field_size)
        huge = raw_request(deployment.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000
                           + b"\r\nConnection: close\r\n\r\n").decode("latin-1")
        assert huge.startswith("HTTP/1.1 400") or huge.startswith("HTTP/1.1 431")
