"""The development IdP on its own: discovery, JWKS, the form (accessible, CSRF-protected), codes, tokens.

Its ID tokens are verified here with jwcrypto, not the library that signed them. It is refused in
production, and served only with IDENTITY_ENV=development said explicitly and a loopback http issuer.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from typing import Any

import pytest
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt
from werkzeug.test import Client

from identity import create_app
from identity.config import ConfigError
from identity.devidp import DevIdP, DevIdPConfig, build_devidp, development_idp_refusal
from identity.devidp.codes import USED_CODES
from identity.devidp.keys import derive_signing_key
from identity.store import SQLiteStore
from tests.conftest import production_settings
from tests.lookup_support import present
from tests.oauth_helpers import pkce_pair, query_of
from tests.upstream_fixtures import DEV_ISSUER, development, register_app_client
from tests.upstream_support import parse_form

ISSUER = "https://idp.example.test"
CALLBACK = "https://id.example.test/login/callback"
CLIENT_ID, SECRET = "rp", "rp-secret"


@pytest.fixture
def idp(tmp_path):
    store = SQLiteStore(tmp_path / "idp.sqlite3")
    yield DevIdP(DevIdPConfig(issuer=ISSUER, client_id=CLIENT_ID, client_secret=SECRET, redirect_uris=(CALLBACK,),
                              secret=os.urandom(32)), store=store)
    store.close()


@pytest.fixture
def http(idp) -> Client:
    return Client(idp.app)


def authorize_params(challenge: str, **extra: str | None) -> dict[str, str]:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": CALLBACK, "scope": "openid email",
              "state": "s-1", "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return {k: v for k, v in params.items() if v is not None}


def get(http: Client, path: str, **kwargs: Any):
    return http.get(path, base_url=ISSUER, **kwargs)


def post(http: Client, path: str, **kwargs: Any):
    return http.post(path, base_url=ISSUER, **kwargs)


def sign_in(http: Client, email: str = "ivy@example.org", **extra: str | None) -> tuple[str, str]:
    """Show the form, submit it; returns (code, verifier)."""
    verifier, challenge = pkce_pair()
    form = parse_form(get(http, "/authorize", query_string=authorize_params(challenge, **extra)).get_data(as_text=True))
    assert form.action
    response = post(http, form.action, data={**form.fields, "email": email, "action": "sign-in"})
    assert response.status_code == 303, response.get_data(as_text=True)
    return query_of(response.headers["Location"])["code"], verifier


def redeem(http: Client, code_value: str, verifier: str, auth: tuple[str, str] | None = (CLIENT_ID, SECRET),
           **extra: str):
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    data = {"grant_type": "authorization_code", "code": code_value, "redirect_uri": CALLBACK,
            "code_verifier": verifier, **extra}
    return post(http, "/token", data=data, headers=headers)


# -- discovery and keys ------------------------------------------------------------------------

def test_discovery_names_the_issuer_and_endpoints(http):
    meta = get(http, "/.well-known/openid-configuration").json
    assert meta["issuer"] == ISSUER
    assert meta["authorization_endpoint"] == f"{ISSUER}/authorize" and meta["token_endpoint"] == f"{ISSUER}/token"
    assert meta["jwks_uri"] == f"{ISSUER}/jwks" and meta["id_token_signing_alg_values_supported"] == ["ES256"]
    assert meta["code_challenge_methods_supported"] == ["S256"]


def test_jwks_publishes_only_public_keys_and_keeps_the_previous_one_after_rotation(http, idp):
    first = get(http, "/jwks")
    assert first.mimetype == "application/jwk-set+json"
    keys = first.json["keys"]
    assert len(keys) == 1 and "d" not in keys[0] and keys[0]["alg"] == "ES256" and keys[0]["use"] == "sig"
    idp.keys.rotate()
    rotated = get(http, "/jwks").json["keys"]
    assert [k["kid"] for k in rotated] == [idp.keys.active.kid, keys[0]["kid"]]
    idp.keys.rotate(keep_previous=False)
    assert [k["kid"] for k in get(http, "/jwks").json["keys"]] == [idp.keys.active.kid]


def test_signing_keys_are_derived_the_same_in_every_worker_and_differ_per_secret():
    secret = os.urandom(32)
    assert derive_signing_key(secret, 0).kid == derive_signing_key(secret, 0).kid
    assert derive_signing_key(secret, 0).kid != derive_signing_key(secret, 1).kid
    assert derive_signing_key(secret, 0).kid != derive_signing_key(os.urandom(32), 0).kid


# -- the form ------------------------------------------------------------------------------------

def test_the_form_is_plain_accessible_html_with_a_csrf_token_and_no_external_assets(http):
    _, challenge = pkce_pair()
    response = get(http, "/authorize", query_string=authorize_params(challenge))
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert '<html lang="en">' in html and "<title>" in html and "<main>" in html
    form = parse_form(html)
    assert form.labels["email"] == "E-mail address" and form.email_input["type"] == "email"
    assert form.email_input["autocomplete"] == "email" and "required" in form.email_input
    assert len(form.fields["csrf_token"]) >= 32 and form.fields["state"] == "s-1"
    assert "<script" not in html and "src=" not in html and "http://" not in html.replace(ISSUER, "")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("devidp_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie and "Path=/" in cookie


def test_a_post_without_the_csrf_token_of_this_browser_is_refused(http, idp):
    _, challenge = pkce_pair()
    form = parse_form(get(http, "/authorize", query_string=authorize_params(challenge)).get_data(as_text=True))
    fields = {**form.fields, "email": "ivy@example.org", "action": "sign-in"}
    assert post(http, "/authorize", data={**fields, "csrf_token": "guess"}).status_code == 400
    assert post(http, "/authorize", data={k: v for k, v in fields.items() if k != "csrf_token"}).status_code == 400
    other_browser = Client(idp.app)  # a cross-site POST carries no IdP session cookie
    response = post(other_browser, "/authorize", data=fields)
    assert response.status_code == 400 and "Location" not in response.headers
    assert post(http, "/authorize", data=fields).status_code == 303


@pytest.mark.parametrize("email", ["", "not-an-address", "two@@example.org", "x" * 250 + "@example.org"])
def test_an_unusable_address_shows_the_form_again_with_an_accessible_error(http, email):
    _, challenge = pkce_pair()
    form = parse_form(get(http, "/authorize", query_string=authorize_params(challenge)).get_data(as_text=True))
    response = post(http, "/authorize", data={**form.fields, "email": email, "action": "sign-in"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "Location" not in response.headers
    assert 'role="alert"' in html and 'aria-invalid="true"' in html and 'aria-describedby="email-error"' in html


def test_cancel_redirects_with_access_denied_and_the_state(http):
    _, challenge = pkce_pair()
    form = parse_form(get(http, "/authorize", query_string=authorize_params(challenge)).get_data(as_text=True))
    response = post(http, "/authorize", data={**form.fields, "email": "", "action": "cancel"})
    params = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(CALLBACK + "?")
    assert params["error"] == "access_denied" and params["state"] == "s-1" and params["iss"] == ISSUER


@pytest.mark.parametrize("change", [{"client_id": "someone"}, {"client_id": None},
                                    {"redirect_uri": "https://evil.example.test/cb"}, {"redirect_uri": None},
                                    {"redirect_uri": CALLBACK + "/../elsewhere"}])
def test_an_unknown_client_or_redirect_uri_is_an_error_page_never_a_redirect(http, change):
    _, challenge = pkce_pair()
    response = get(http, "/authorize", query_string=authorize_params(challenge, **change))
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("change, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "email"}, "invalid_scope"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
])
def test_other_bad_requests_are_oauth_error_redirects_to_the_registered_uri(http, change, error):
    _, challenge = pkce_pair()
    response = get(http, "/authorize", query_string=authorize_params(challenge, **change))
    assert response.status_code == 303 and response.headers["Location"].startswith(CALLBACK + "?")
    params = query_of(response.headers["Location"])
    assert params["error"] == error and params["state"] == "s-1"


def test_a_repeated_parameter_is_refused(http):
    _, challenge = pkce_pair()
    query = "&".join(f"{k}={v}" for k, v in authorize_params(challenge).items()) + "&state=again"
    response = get(http, "/authorize?" + query)
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


# -- codes and tokens -----------------------------------------------------------------------------

def test_a_code_redeems_once_for_an_id_token_verifiable_independently(http, idp):
    code, verifier = sign_in(http, "Ivy@Example.org")
    raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    assert b"example.org" not in raw.lower()  # the code is sealed: the address is not readable in URLs or logs
    response = redeem(http, code, verifier)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "Bearer" and body["scope"] == "openid email"
    keyset = jc_jwk.JWKSet.from_json(json.dumps(get(http, "/jwks").json))
    token = jc_jwt.JWT(jwt=body["id_token"], key=keyset, algs=["ES256"])
    claims = json.loads(token.claims)
    assert claims["iss"] == ISSUER and claims["aud"] == CLIENT_ID and claims["nonce"] == "n-1"
    assert claims["email"] == "Ivy@Example.org" and claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 300 and claims["sub"].startswith("dev|")
    assert redeem(http, code, verifier).json["error"] == "invalid_grant"  # one-time


def test_the_same_address_has_the_same_subject(http):
    subjects = set()
    for email in ("ivy@example.org", " IVY@example.org"):
        code, verifier = sign_in(http, email)
        token = redeem(http, code, verifier).json["id_token"]
        segment = token.split(".")[1]
        subjects.add(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))["sub"])
    assert len(subjects) == 1


def test_client_secret_post_is_accepted_too(http):
    code, verifier = sign_in(http)
    response = redeem(http, code, verifier, auth=None, client_id=CLIENT_ID, client_secret=SECRET)
    assert response.status_code == 200 and "id_token" in response.json


@pytest.mark.parametrize("auth, extra", [
    ((CLIENT_ID, "wrong"), {}), (("other", SECRET), {}), (None, {}), (None, {"client_id": CLIENT_ID}),
    ((CLIENT_ID, SECRET), {"client_secret": SECRET}),  # two ways at once
])
def test_bad_client_authentication_is_invalid_client(http, auth, extra):
    code, verifier = sign_in(http)
    response = redeem(http, code, verifier, auth=auth, **extra)
    assert response.status_code == 401 and response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("tamper", ["verifier", "redirect_uri", "code", "grant_type"])
def test_wrong_verifier_redirect_code_or_grant_is_refused(http, tamper):
    code, verifier = sign_in(http)
    extra = {"verifier": {"code_verifier": pkce_pair()[0]}, "redirect_uri": {"redirect_uri": CALLBACK + "x"},
             "code": {"code": code[:-4] + "AAAA"}, "grant_type": {"grant_type": "client_credentials"}}[tamper]
    response = redeem(http, code, verifier, auth=(CLIENT_ID, SECRET), **extra)  # the default: extra is form fields
    assert response.status_code == 400
    assert response.json["error"] == ("unsupported_grant_type" if tamper == "grant_type" else "invalid_grant")


def test_an_expired_code_is_refused_and_used_codes_are_tidied(tmp_path):
    now = [1_000_000.0]
    store = SQLiteStore(tmp_path / "idp.sqlite3")
    idp = DevIdP(DevIdPConfig(issuer=ISSUER, client_id=CLIENT_ID, client_secret=SECRET, redirect_uris=(CALLBACK,),
                              secret=os.urandom(32)), store=store, clock=lambda: now[0])
    http = Client(idp.app)
    code, verifier = sign_in(http)
    now[0] += 61
    assert redeem(http, code, verifier).json["error"] == "invalid_grant"
    code, verifier = sign_in(http)
    assert redeem(http, code, verifier).status_code == 200
    now[0] += 3600
    code, verifier = sign_in(http)
    assert redeem(http, code, verifier).status_code == 200
    assert store.count(USED_CODES, {}) == 1  # the first used code expired and was removed
    store.close()


# -- never in production -----------------------------------------------------------------------------

def test_building_the_dev_idp_is_refused_in_production(settings, sqlite_store):
    with pytest.raises(ConfigError, match="refused in production"):
        build_devidp(dataclasses.replace(settings, env="production"), store=sqlite_store,
                     secret=os.urandom(32), redirect_uri=CALLBACK)


def test_production_never_mounts_the_dev_idp(settings, tmp_path):
    prod = production_settings(settings, tmp_path)
    with pytest.raises(ConfigError, match="IDENTITY_UPSTREAM_"):
        create_app(prod)  # a hand-built Settings without upstream: refused, never the dev IdP
    upstream = dataclasses.replace(prod, upstream_issuer="https://idp.example.org", upstream_client_id="c",
                                   upstream_client_secret="s")
    app = create_app(upstream)
    client = app.test_client()
    assert client.get("/devidp/.well-known/openid-configuration", base_url="https://id.example.test").status_code == 404
    app.extensions["identity"].store.close()


def test_development_mounts_it_under_the_issuer(dev_app_settings_client):
    meta = dev_app_settings_client.get("/devidp/.well-known/openid-configuration", base_url=DEV_ISSUER).json
    assert meta["issuer"] == f"{DEV_ISSUER}/devidp"


@pytest.fixture
def dev_app_settings_client(settings):
    app = create_app(development(settings))
    yield app.test_client()
    app.extensions["identity"].store.close()


# -- never by omission, never on an address others reach --------------------------------------------

@pytest.mark.parametrize("remote", ["192.0.2.2", "10.0.0.7", "2001:db8::1"])
def test_a_caller_on_another_machine_never_reaches_it_even_when_the_service_listens_there(
        dev_app_settings_client, remote):
    """``serve.py --bind 0.0.0.0:5000`` (or a container's published port) in development: anyone on the network
    could otherwise sign in as anyone. The service's own pages still answer there; the IdP does not."""
    elsewhere = {"REMOTE_ADDR": remote}
    challenge = pkce_pair()[1]
    for path in ("/devidp/authorize", "/devidp/.well-known/openid-configuration", "/devidp/jwks"):
        page = dev_app_settings_client.get(path, query_string=authorize_params(challenge),
                                           environ_overrides=elsewhere)
        assert page.status_code == 403, path
    signed_in = dev_app_settings_client.post("/devidp/authorize", data={"email": "victim@example.org"},
                                             environ_overrides=elsewhere)
    assert signed_in.status_code == 403
    assert dev_app_settings_client.get("/devidp/jwks").status_code == 200  # this machine: served
    assert dev_app_settings_client.get("/healthz", environ_overrides=elsewhere).status_code == 200

@pytest.mark.parametrize("issuer", ["http://127.0.0.1:5000", "http://127.0.0.2:8080", "http://[::1]:5000",
                                    "http://localhost:5000"])
def test_only_explicit_development_on_a_loopback_http_issuer_may_serve_it(settings, issuer):
    assert development_idp_refusal(development(settings, issuer)) is None
    implicit = dataclasses.replace(settings, issuer=issuer, env_explicit=False)
    assert "IDENTITY_ENV=development" in present(development_idp_refusal(implicit))


@pytest.mark.parametrize("issuer", ["https://id.example.test", "http://id.example.test", "http://10.0.0.5:5000",
                                    "http://0.0.0.0:5000", "https://127.0.0.1:5000"])
def test_a_non_loopback_or_https_issuer_never_serves_it_even_in_explicit_development(settings, sqlite_store, issuer):
    explicit = development(settings, issuer)
    assert "loopback http issuer" in present(development_idp_refusal(explicit))
    with pytest.raises(ConfigError, match="loopback http issuer"):
        build_devidp(explicit, store=sqlite_store, secret=os.urandom(32), redirect_uri=CALLBACK)


@pytest.mark.parametrize("issuer", ["https://id.example.test", "https://127.0.0.1:5000"])
def test_an_https_app_in_explicit_development_starts_without_it(settings, issuer, caplog):
    """(Plain http to a non-loopback issuer does not start at all: tests/test_config.py.)"""
    app = create_app(development(settings, issuer))
    client = app.test_client()
    assert client.get("/devidp/.well-known/openid-configuration", base_url=issuer).status_code == 404
    assert "no login is offered" in caplog.text and "loopback http issuer" in caplog.text
    app.extensions["identity"].store.close()


def test_the_reported_case_an_unset_environment_serves_no_login_page(settings, audience_keys, monkeypatch):
    """An https issuer without IDENTITY_ENV refuses to start; on a loopback issuer it starts, without the
    development IdP: /authorize tells the app no login is configured."""
    environment = {"IDENTITY_ISSUER": "https://id.example.org", "IDENTITY_KEYS_DIR": str(settings.keys_dir),
                   "IDENTITY_DB_URI": settings.db_uri, "IDENTITY_RATE_LIMITS_ENABLED": "false"}
    for name in [n for n in os.environ if n.startswith("IDENTITY_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="IDENTITY_ENV is not set"):
        create_app()
    monkeypatch.setenv("IDENTITY_ISSUER", DEV_ISSUER)
    app = create_app()
    client = register_app_client(app, audience_keys)
    http = app.test_client()
    assert http.get("/devidp/authorize", base_url=DEV_ISSUER).status_code == 404
    _, challenge = pkce_pair()
    answer = http.get("/authorize", base_url=DEV_ISSUER, query_string={
        "response_type": "code", "client_id": client.client_id, "code_challenge": challenge,
        "code_challenge_method": "S256"})
    assert query_of(answer.headers["Location"])["error"] == "temporarily_unavailable"
    app.extensions["identity"].store.close()


def test_make_run_settings_serve_it(settings, monkeypatch):
    """What the Makefile sets: IDENTITY_ENV=development and the default (loopback) issuer."""
    for name in [n for n in os.environ if n.startswith("IDENTITY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IDENTITY_ENV", "development")
    monkeypatch.setenv("IDENTITY_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("IDENTITY_DB_URI", settings.db_uri)
    app = create_app()
    assert app.test_client().get("/devidp/jwks", base_url=DEV_ISSUER).status_code == 200
    app.extensions["identity"].store.close()
