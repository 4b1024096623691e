"""Every endpoint's parameters fuzzed (hypothesis): random methods, paths, parameters (repeated, huge,
non-UTF-8, control characters), bodies, content types and charsets, and headers. The service must
never answer 5xx, and no body may carry a traceback or an internal exception name."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REDIRECT_URI
from tests.oauth_helpers import pkce_pair

from .fuzz_app import ISSUER, FuzzTarget, build

PATHS = ["/authorize", "/token", "/revoke", "/introspect", "/me", "/me/export", "/me/email", "/me/email/change",
         "/me/email/changed", "/login/callback", "/healthz", "/readyz", "/.well-known/jwks.json",
         "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/devidp/authorize",
         "/devidp/token", "/devidp/jwks", "/devidp/.well-known/openid-configuration", "/", "/static/x",
         "/authorize/", "//token", "/token%00", "/%2e%2e/etc/passwd", "/me/../token"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND"]
NAMES = ["client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge", "code_challenge_method",
         "nonce", "resource", "response_mode", "prompt", "request", "request_uri", "grant_type", "code",
         "code_verifier", "refresh_token", "client_secret", "token", "token_type_hint", "ticket", "error", "iss",
         "email", "csrf_token", "action", "error_description", "client_id[]", "", "%ff"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8",
                 "application/x-www-form-urlencoded; charset=latin-1",
                 "application/x-www-form-urlencoded; charset=utf-16",
                 "application/x-www-form-urlencoded; charset=no-such-charset", "application/json",
                 "multipart/form-data; boundary=xyz", "multipart/form-data", "text/plain", "text/html", "", "*/*",
                 "application/x-www-form-urlencoded; boundary=\"", "application/jwt"]
FORBIDDEN_IN_BODY = ("Traceback", 'File "/', "sqlite3.", "werkzeug.exceptions", "KeyError", "TypeError",
                     "AttributeError", "ValueError", "Internal Server Error")

LATIN1_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                      max_size=200)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200)


@pytest.fixture(scope="module")
def target(module_dir, key_template):
    built = build(module_dir / "endpoints", key_template)
    yield built
    built.close()


def values(target: FuzzTarget) -> st.SearchStrategy[str]:
    _, challenge = pkce_pair()
    plausible = [target.public_client_id, target.confidential_client_id, target.secret, REDIRECT_URI, "code", "token",
                 "S256", "plain", challenge, "openid", "openid identity:self records:read", "authorization_code",
                 "refresh_token", "client_credentials", "password", "https://api.example.org", "none", "login",
                 "person@example.org", "a" * 5000, "\x00", "%ff%fe", "\r\nLocation: https://evil.example"]
    return st.one_of(st.sampled_from(plausible), ANY_TEXT, st.binary(max_size=100).map(lambda b: b.decode("latin-1")))


def encode_pairs(pairs: list[tuple[str, str]], charset: str) -> bytes:
    out = []
    for name, value in pairs:
        out.append(f"{quote(name.encode(charset, 'replace'))}={quote(value.encode(charset, 'replace'))}")
    return "&".join(out).encode("ascii")


@st.composite
def requests(draw: Any, target: FuzzTarget) -> dict[str, Any]:
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(NAMES), ANY_TEXT), values(target)), max_size=8))
    charset = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
    in_query = draw(st.booleans())
    body_kind = draw(st.sampled_from(["none", "form", "json", "bytes"]))
    query = encode_pairs(pairs, charset) if in_query else draw(st.sampled_from([b"", b"%", b"a=%zz&b", b"&&=&"]))
    if body_kind == "form":
        body = encode_pairs(pairs, charset)
    elif body_kind == "json":
        body = json.dumps(dict(pairs)).encode("utf-8")
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=2000))
    else:
        body = b""
    headers = [("Content-Type", draw(st.sampled_from(CONTENT_TYPES)))]
    authorization = draw(st.one_of(
        st.none(),
        st.tuples(st.sampled_from([target.public_client_id, target.confidential_client_id, "x", ""]),
                  st.sampled_from([target.secret, "wrong", ""])).map(
            lambda p: "Basic " + base64.b64encode(f"{p[0]}:{p[1]}".encode()).decode()),
        LATIN1_TEXT.map(lambda t: "Basic " + t), LATIN1_TEXT.map(lambda t: "Bearer " + t), LATIN1_TEXT,
    ))
    if authorization is not None:
        headers.append(("Authorization", authorization))
    for name in draw(st.lists(st.sampled_from(["Cookie", "Origin", "X-Forwarded-For", "Accept", "Accept-Charset",
                                               "If-None-Match", "Range", "Host", "X-HTTP-Method-Override"]),
                              max_size=3, unique=True)):
        headers.append((name, draw(LATIN1_TEXT)))
    random_path = ANY_TEXT.map(lambda t: "/" + quote(t.encode("utf-8")))
    # mostly real endpoints and their methods, sometimes anything at all
    path = draw(random_path if draw(st.integers(0, 9)) == 9 else st.sampled_from(PATHS))
    method = draw(st.sampled_from(METHODS) if draw(st.integers(0, 4)) == 4 else st.sampled_from(["GET", "POST"]))
    return {"path": path, "method": method, "query_string": query, "data": body, "headers": headers}


def assert_handled(response, request: dict[str, Any]) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code < 500, (response.status_code, request, body[:500])
    for marker in FORBIDDEN_IN_BODY:
        assert marker not in body, (marker, request, body[:500])


def send(target: FuzzTarget, request: dict[str, Any]):
    client = target.app.test_client()
    return client.open(request["path"], method=request["method"],
                       query_string=request["query_string"].decode("latin-1"), data=request["data"],
                       headers=request["headers"])


@given(data=st.data())
def test_random_requests_to_every_endpoint_never_fail_the_server(target, data):
    request = data.draw(requests(target))
    assert_handled(send(target, request), request)


@given(data=st.data())
def test_authorization_requests_with_plausible_parameters(target, data):
    _, challenge = pkce_pair()
    base = {"response_type": "code", "client_id": target.public_client_id, "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid"}
    changes = data.draw(st.dictionaries(st.sampled_from(NAMES), values(target), max_size=4))
    params = [(k, v) for k, v in {**base, **changes}.items()]
    method = data.draw(st.sampled_from(["GET", "POST"]))
    charset = data.draw(st.sampled_from(["utf-8", "latin-1"]))
    encoded = encode_pairs(params, charset)
    request = {"path": "/authorize", "method": method, "query_string": encoded if method == "GET" else b"",
               "data": encoded if method == "POST" else b"",
               "headers": [("Content-Type", f"application/x-www-form-urlencoded; charset={charset}")]}
    response = send(target, request)
    assert_handled(response, request)
    if response.status_code in (301, 302, 303, 307, 308):
        location = response.headers["Location"]
        assert location.startswith((REDIRECT_URI, f"{ISSUER}/devidp/")), location


@given(data=st.data())
def test_token_requests_with_plausible_parameters(target, data):
    form = data.draw(st.dictionaries(st.sampled_from(NAMES), values(target), max_size=6))
    form.setdefault("grant_type", data.draw(st.sampled_from(["authorization_code", "refresh_token",
                                                             "client_credentials", "password", ""])))
    path = data.draw(st.sampled_from(["/token", "/introspect", "/revoke"]))
    secret = data.draw(st.sampled_from([target.secret, "wrong"]))
    credentials = base64.b64encode(f"{target.confidential_client_id}:{secret}".encode()).decode()
    request = {"path": path, "method": "POST", "query_string": b"", "data": encode_pairs(list(form.items()), "utf-8"),
               "headers": [("Content-Type", "application/x-www-form-urlencoded"),
                           ("Authorization", f"Basic {credentials}")]}
    response = send(target, request)
    assert_handled(response, request)
    assert response.headers["Cache-Control"] == "no-store"
    if response.status_code == 401:
        assert response.json["error"] == "invalid_client"
