"""The broker over real HTTP on 127.0.0.1: the production transport, timeouts, an unreachable or slow
provider, a provider whose discovery document is wrong, and the ``make run`` set-up served for real."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from identity import create_app
from identity.devidp import DevIdP, DevIdPConfig
from identity.oauth.records import PENDING_AUTHORIZATIONS
from identity.store import SQLiteStore
from identity.upstream import UpstreamBroker, callback_url
from tests.conftest import REDIRECT_URI, production_settings
from tests.oauth_helpers import pkce_pair, query_of
from tests.upstream_fixtures import UPSTREAM_CLIENT_ID, UPSTREAM_SECRET, register_app_client, upstream_config
from tests.upstream_support import (
    Browser, LiveServer, TamperingIdP, authorization_url, decode_segment, log_in, parse_form,
)

ISSUER = "https://id.example.test"


@pytest.fixture
def live_idp(settings, tmp_path):
    """A provider served over HTTP on a random port; yields (server, tampering wrapper, idp)."""
    store = SQLiteStore(tmp_path / "live-idp.sqlite3")
    with LiveServer() as server:
        config = DevIdPConfig(issuer=server.url, client_id=UPSTREAM_CLIENT_ID, client_secret=UPSTREAM_SECRET,
                              redirect_uris=(callback_url(settings.issuer),), secret=os.urandom(32))
        tampering = TamperingIdP(DevIdP(config, store=store))
        server.app = tampering
        yield server, tampering
    store.close()


def service_for(settings, issuer: str, audience_keys, timeout: float = 2.0):
    """The service configured for ``issuer`` as for Auth0 (no in-process transport: real HTTP)."""
    broker = UpstreamBroker(upstream_config(settings, issuer=issuer, timeout=timeout, require_https=False))
    app = create_app(settings, login_broker=broker)
    return app, register_app_client(app, audience_keys)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_login(app, client):
    verifier, challenge = pkce_pair()
    url = authorization_url(ISSUER, client.client_id, REDIRECT_URI, challenge)
    parts = urlsplit(url)
    return app.test_client().get(parts.path, base_url=ISSUER, query_string=parts.query)


def assert_redirected_with(response, error: str, app) -> None:
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert params["error"] == error and params["state"] == "app-state" and "code" not in params
    assert app.extensions["identity"].store.count(PENDING_AUTHORIZATIONS, {}) == 0


def test_whole_login_with_the_back_channel_over_http(settings, audience_keys, live_idp):
    server, tampering = live_idp
    app, client = service_for(settings, server.url, audience_keys)
    browser = Browser({"id.example.test": app, urlsplit(server.url).netloc: tampering}, stop_at=REDIRECT_URI)
    tampering.requests.clear()
    result = log_in(browser, ISSUER, client.client_id, REDIRECT_URI, "heidi@example.org")
    assert "code" in result.params
    assert "/.well-known/openid-configuration" in tampering.requests and "/token" in tampering.requests
    assert "/jwks" in tampering.requests


def test_an_auth0_style_issuer_with_a_final_slash_works(settings, audience_keys, tmp_path):
    store = SQLiteStore(tmp_path / "slash-idp.sqlite3")
    with LiveServer() as server:
        idp = DevIdP(DevIdPConfig(issuer=server.url + "/", client_id=UPSTREAM_CLIENT_ID, client_secret=UPSTREAM_SECRET,
                                  redirect_uris=(callback_url(settings.issuer),), secret=os.urandom(32)), store=store)
        server.app = idp.app
        app, client = service_for(settings, server.url, audience_keys)  # IDENTITY_UPSTREAM_ISSUER loses the "/"
        browser = Browser({"id.example.test": app, urlsplit(server.url).netloc: idp.app}, stop_at=REDIRECT_URI)
        result = log_in(browser, ISSUER, client.client_id, REDIRECT_URI, "ivan@example.org")
        assert "code" in result.params
    store.close()


def test_an_unreachable_provider_is_temporarily_unavailable_for_the_app(settings, audience_keys, caplog):
    app, client = service_for(settings, f"http://127.0.0.1:{closed_port()}", audience_keys)
    assert_redirected_with(start_login(app, client), "temporarily_unavailable", app)
    assert [r.reason for r in caplog.records if r.getMessage() == "upstream login failed"] == [
        "discovery_ConnectionError"]


def test_a_slow_discovery_document_times_out(settings, audience_keys, live_idp):
    server, tampering = live_idp
    tampering.delays["/.well-known/openid-configuration"] = 3.0
    app, client = service_for(settings, server.url, audience_keys, timeout=0.3)
    started = time.monotonic()
    assert_redirected_with(start_login(app, client), "temporarily_unavailable", app)
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("path", ["/token", "/jwks"])
def test_a_slow_token_endpoint_or_jwks_times_out_after_the_person_signed_in(path, settings, audience_keys, live_idp):
    server, tampering = live_idp
    app, client = service_for(settings, server.url, audience_keys, timeout=0.3)
    browser = Browser({"id.example.test": app, urlsplit(server.url).netloc: tampering}, stop_at=REDIRECT_URI)
    tampering.delays[path] = 3.0
    started = time.monotonic()
    result = log_in(browser, ISSUER, client.client_id, REDIRECT_URI, "judy@example.org")
    assert time.monotonic() - started < 2.5
    params = result.params
    assert params["error"] == "temporarily_unavailable" and params["state"] == "app-state" and "code" not in params


def test_a_provider_that_goes_away_between_start_and_callback(settings, audience_keys, live_idp):
    server, tampering = live_idp
    app, client = service_for(settings, server.url, audience_keys)
    browser = Browser({"id.example.test": app, urlsplit(server.url).netloc: tampering}, stop_at=REDIRECT_URI)
    tampering.replies["/token"] = (503, b"<h1>Service Unavailable</h1>")
    result = log_in(browser, ISSUER, client.client_id, REDIRECT_URI, "kim@example.org")
    assert result.params["error"] == "temporarily_unavailable"


def test_a_discovery_document_for_another_issuer_is_refused_and_fetched_again_later(settings, audience_keys,
                                                                                   live_idp, caplog):
    server, tampering = live_idp
    genuine = requests.get(server.url + "/.well-known/openid-configuration", timeout=2).json()
    tampering.replies["/.well-known/openid-configuration"] = (
        200, json.dumps({**genuine, "issuer": "https://evil.example.test"}).encode())
    app, client = service_for(settings, server.url, audience_keys)
    assert_redirected_with(start_login(app, client), "temporarily_unavailable", app)
    assert any(r.levelno == logging.ERROR and "misconfigured" in r.getMessage() for r in caplog.records)
    del tampering.replies["/.well-known/openid-configuration"]
    response = start_login(app, client)
    assert response.status_code == 303 and response.headers["Location"].startswith(server.url + "/authorize?")


def test_production_refuses_plain_http_endpoints_in_discovery(settings, audience_keys, live_idp):
    server, _ = live_idp
    broker = UpstreamBroker(upstream_config(settings, issuer=server.url, require_https=True))
    app = create_app(settings, login_broker=broker)
    client = register_app_client(app, audience_keys)
    assert_redirected_with(start_login(app, client), "temporarily_unavailable", app)


def test_a_production_app_with_an_unreachable_upstream_answers_the_app(settings, audience_keys, tmp_path):
    prod = production_settings(settings, tmp_path, upstream_issuer=f"https://127.0.0.1:{closed_port()}",
                               upstream_client_id="c", upstream_client_secret="s", upstream_timeout=0.5)
    app = create_app(prod)
    client = register_app_client(app, audience_keys)
    assert_redirected_with(start_login(app, client), "temporarily_unavailable", app)
    assert app.test_client().get("/devidp/jwks", base_url=ISSUER).status_code == 404


def test_make_run_setup_served_over_http_logs_in_end_to_end(settings, audience_keys):
    """The development app (dev IdP mounted, in-process back channel) behind a real threaded server,
    driven by an HTTP client acting as the browser."""
    with LiveServer() as server:
        app = create_app(dataclasses.replace(settings, issuer=server.url, env_explicit=True))
        server.app = app
        client = register_app_client(app, audience_keys)
        verifier, challenge = pkce_pair()
        browser = requests.Session()
        form_page = browser.get(authorization_url(server.url, client.client_id, REDIRECT_URI, challenge), timeout=5)
        assert form_page.status_code == 200 and form_page.url.startswith(server.url + "/devidp/authorize?")
        form = parse_form(form_page.text)
        assert form.action, form_page.text
        done = browser.post(server.url + form.action, data={**form.fields, "email": "leo@example.org",
                                                            "action": "sign-in"}, allow_redirects=False, timeout=5)
        callback = browser.get(done.headers["Location"], allow_redirects=False, timeout=5)
        location = callback.headers["Location"]
        assert callback.status_code == 303 and location.startswith(REDIRECT_URI + "?")
        tokens = requests.post(server.url + "/token", timeout=5, data={
            "grant_type": "authorization_code", "code": query_of(location)["code"], "redirect_uri": REDIRECT_URI,
            "client_id": client.client_id, "code_verifier": verifier}).json()
        pseudonym = app.extensions["identity"].vault.pseudonymise("leo@example.org").identity.pseudonym
        subject = app.extensions["identity"].oauth.subjects.subject_for(pseudonym, client=client.client_id)
        assert decode_segment(tokens["id_token"])["sub"] == subject != pseudonym  # the app's sector's subject
        app.extensions["identity"].store.close()
