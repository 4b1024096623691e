"""The Authlib client for the upstream IdP (``identity/upstream/client.py``): what it takes from the discovery
document and the JWKS.

Only the members the service reads are kept, none of them a session setting, so a document cannot switch off
TLS verification, add a proxy, stretch the timeout or weaken PKCE. A document of any odd shape or type is
refused cleanly (the app gets ``temporarily_unavailable``, a page showing the sign-in form still works, the
operator gets an ERROR line) and is not kept: once the IdP fixes it, the next login works.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.requests_client.utils import REQUESTS_SESSION_KWARGS
from authlib.oauth2.client import OAuth2Client

from identity.upstream.client import DISCOVERY_FIELDS, SIGNING_ALGORITHMS
from identity.upstream.errors import UpstreamMisconfigured
from identity.upstream.transport import MAX_ANSWER_BYTES, UpstreamSession
from identity.web.login import EXTENSION as LOGIN_BROKER
from tests.conftest import REDIRECT_URI
from tests.oauth_helpers import pkce_pair, query_of
from tests.upstream_fixtures import (  # noqa: F401
    UPSTREAM,
    broker_app,
    broker_browser,
    broker_client,
    tampering,
    upstream_idp,
)
from tests.upstream_support import authorization_url, log_in

ISSUER = "https://id.example.test"
DISCOVERY = "/.well-known/openid-configuration"
LOADED_AT = "_loaded_at"  # identity._compat.AUTHLIB_LOADED_AT

# Members an IdP (or whoever controls its answer) could add to change the back channel, if they reached it.
HOSTILE_MEMBERS = {
    "verify": False, "proxies": {"https": "http://proxy.attacker.test:3128"}, "trust_env": False,
    "cert": "/etc/ssl/private/key.pem", "max_redirects": 100, "default_timeout": 86400, "timeout": 86400,
    "code_challenge_method": "plain", "scope": "openid", "token_endpoint_auth_method": "none",
    "token_placement": "uri", "leeway": 10 ** 9, "require_https": False, "max_bytes": 10 ** 12,
    "jwks": {"keys": []}, "redirect_uri": "https://attacker.test/cb",
}


def start(app, client) -> Any:
    _, challenge = pkce_pair()
    url = authorization_url(ISSUER, client.client_id, REDIRECT_URI, challenge)
    return app.test_client().get(url[len(ISSUER):], base_url=ISSUER)


def upstream_client(app) -> Any:
    return app.extensions[LOGIN_BROKER].client


# -- what is kept, and what the sessions are made of ------------------------------------------------

def test_discovery_members_never_become_back_channel_settings(broker_app, broker_browser, broker_client, tampering,
                                                               upstream_idp, monkeypatch):
    sessions: list[tuple[str, UpstreamSession]] = []
    original = UpstreamSession.request

    def spy(self: UpstreamSession, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        sessions.append((method, self))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(UpstreamSession, "request", spy)
    tampering.replies[DISCOVERY] = (200, json.dumps({**upstream_idp.metadata(), **HOSTILE_MEMBERS}).encode())
    upstream_request = query_of(start(broker_app, broker_client).headers["Location"])
    assert {name: upstream_request.get(name) for name in ("code_challenge_method", "scope", "redirect_uri")} == {
        "code_challenge_method": "S256", "scope": "openid email", "redirect_uri": f"{ISSUER}/login/callback"}
    result = log_in(broker_browser, ISSUER, broker_client.client_id, REDIRECT_URI, "hana@example.org")
    assert "code" in result.params
    # discovery, the token endpoint and the JWKS: each session has our settings, none of the document's
    assert sorted(method for method, _ in sessions) == ["GET", "GET", "POST"]
    for method, session in sessions:
        assert session.verify is True and session.proxies == {} and session.trust_env is True
        assert session.cert is None and session.max_redirects == requests.models.DEFAULT_REDIRECT_LIMIT
        assert session.default_timeout == 2.0 and session.require_https is True and session.max_bytes == MAX_ANSWER_BYTES
        assert session.code_challenge_method == "S256" and session.scope == "openid email"
        assert session.token_auth.token_placement == "header" and session.leeway == 60
        if method == "POST":  # the token request: the client authentication we chose
            assert session.token_endpoint_auth_method == "client_secret_basic"
        assert not set(HOSTILE_MEMBERS) & set(session.metadata)
    kept = upstream_client(broker_app).load_server_metadata()
    assert set(kept) <= {*DISCOVERY_FIELDS, "jwks", LOADED_AT}
    assert kept["jwks"]["keys"]  # the JWKS fetched from jwks_uri, not the document's empty one


def test_the_kept_members_are_none_of_the_session_settings():
    """Authlib passes what ``load_server_metadata`` returns to each session as keywords: none may be a setting."""
    settings = set(REQUESTS_SESSION_KWARGS)
    for cls in (UpstreamSession, OAuth2Session, OAuth2Client):
        settings |= {name for name, p in inspect.signature(cls.__init__).parameters.items()
                     if p.kind is inspect.Parameter.KEYWORD_ONLY or p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD}
    assert not settings & {*DISCOVERY_FIELDS, "jwks", LOADED_AT}


def test_only_our_algorithms_and_auth_method_are_kept(broker_app, broker_client, tampering, upstream_idp):
    tampering.replies[DISCOVERY] = (200, json.dumps({
        **upstream_idp.metadata(), "id_token_signing_alg_values_supported": ["none", "HS256", "ES256", "RS256"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt", "client_secret_post"]}).encode())
    assert start(broker_app, broker_client).headers["Location"].startswith(f"{UPSTREAM}/authorize?")
    kept = upstream_client(broker_app).load_server_metadata()
    assert kept["id_token_signing_alg_values_supported"] == [a for a in SIGNING_ALGORITHMS if a in ("ES256", "RS256")]
    assert kept["token_endpoint_auth_methods_supported"] == ["client_secret_post"]
    assert upstream_client(broker_app).client_kwargs["token_endpoint_auth_method"] == "client_secret_post"


# -- odd documents ----------------------------------------------------------------------------------

def genuine_with(**members: Any):
    return lambda genuine: json.dumps({**genuine, **members}).encode()


ODD_DOCUMENTS = {
    "issuer_number": genuine_with(issuer=5),
    "issuer_list": genuine_with(issuer=[UPSTREAM]),
    "issuer_null": genuine_with(issuer=None),
    "jwks_uri_list": genuine_with(jwks_uri=[f"{UPSTREAM}/jwks"]),
    "jwks_uri_number": genuine_with(jwks_uri=5),
    "jwks_uri_bad_bracket": genuine_with(jwks_uri="https://[upstream.example.test/jwks"),
    "token_endpoint_bad_port": genuine_with(token_endpoint=f"{UPSTREAM}:99999/token"),
    "token_endpoint_no_host": genuine_with(token_endpoint="https:///token"),
    "authorization_endpoint_object": genuine_with(authorization_endpoint={"url": f"{UPSTREAM}/authorize"}),
    "response_types_number": genuine_with(response_types_supported=1),
    "response_types_string": genuine_with(response_types_supported="code"),
    "response_types_numbers": genuine_with(response_types_supported=[1, 2]),
    "algorithms_string": genuine_with(id_token_signing_alg_values_supported="RS256,ES256"),
    "algorithms_empty": genuine_with(id_token_signing_alg_values_supported=[]),
    "auth_methods_number": genuine_with(token_endpoint_auth_methods_supported=5),
    "auth_methods_object": genuine_with(token_endpoint_auth_methods_supported={"client_secret_basic": True}),
    "document_array": lambda genuine: json.dumps([genuine]).encode(),
    "document_null": lambda genuine: b"null",
    "document_string": lambda genuine: json.dumps(json.dumps(genuine)).encode(),
    "document_nested_too_deeply": lambda genuine: b"[" * 100_000 + b"]" * 100_000,
    "document_not_json": lambda genuine: b"{<html>maintenance</html>",
    "document_not_utf8": lambda genuine: b'{"issuer": "\xff\xfe"}',
}


@pytest.mark.parametrize("case", sorted(ODD_DOCUMENTS))
def test_an_odd_discovery_document_is_refused_cleanly_and_not_kept(case, broker_app, broker_client, tampering,
                                                                   upstream_idp, caplog):
    tampering.replies[DISCOVERY] = (200, ODD_DOCUMENTS[case](upstream_idp.metadata()))
    web = broker_app.test_client()
    account = web.get("/account", base_url=ISSUER)  # shows a sign-in form; its CSP names the IdP if it can
    started = start(broker_app, broker_client)
    assert account.status_code == 200
    assert started.status_code == 303 and started.headers["Location"].startswith(REDIRECT_URI + "?")
    answer = query_of(started.headers["Location"])
    assert answer["error"] == "temporarily_unavailable" and answer["state"] == "app-state"
    assert answer["error_description"] == UpstreamMisconfigured.description
    assert [r.reason for r in caplog.records if r.getMessage() == "upstream login failed"] == ["discovery_rejected"]
    assert any(r.levelno == logging.ERROR and "misconfigured" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]  # refused, no traceback
    assert LOADED_AT not in upstream_client(broker_app).server_metadata
    del tampering.replies[DISCOVERY]  # the IdP fixes its document
    again = start(broker_app, broker_client)
    assert again.headers["Location"].startswith(f"{UPSTREAM}/authorize?")
    assert tampering.count(DISCOVERY) == 3  # each of the three requests fetched it: none kept a bad one


@pytest.mark.parametrize("reply", [
    b"[]", b"null", b'{"keys": 5}', b'{"keys": [1, 2]}', b'{"keys": {"kty": "EC"}}', b"[" * 100_000,
])
def test_a_jwks_of_the_wrong_shape_ends_the_login_unavailable(reply, broker_app, broker_browser, broker_client,
                                                              tampering, caplog):
    tampering.replies["/jwks"] = (200, reply)
    result = log_in(broker_browser, ISSUER, broker_client.client_id, REDIRECT_URI, "ivy@example.org")
    assert result.params["error"] == "temporarily_unavailable" and "code" not in result.params
    assert [r.reason for r in caplog.records if r.getMessage() == "upstream login failed"] == ["jwks_unreachable"]
