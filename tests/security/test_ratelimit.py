"""Rate limits (identity.web.ratelimit): brute force at the token endpoint, floods of /authorize and
of the login callback; 429 with Retry-After; a limit per address; nothing counted that should not be."""

from __future__ import annotations

import dataclasses

import pytest

from identity import create_app
from identity.config import ConfigError
from identity.web import ratelimit
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import pkce_pair
from tests.test_oauth_flow import basic
from tests.upstream_fixtures import development

ATTACKER = {"REMOTE_ADDR": "203.0.113.7"}
NEIGHBOUR = {"REMOTE_ADDR": "198.51.100.20"}


def budget(limit: str) -> int:
    return int(limit.split()[0])


@pytest.fixture
def oauth(limited_app):
    return limited_app.extensions["identity"].oauth


@pytest.fixture
def machine(oauth):
    client, secret = oauth.clients.register(name="Nightly job", public=False, redirect_uris=[], grant_types=None,
                                            scopes=["records:read"], audiences=[API])
    return client, secret


@pytest.fixture
def http(limited_app):
    return limited_app.test_client()


def client_credentials(http, client_id, secret, environ=ATTACKER):
    return http.post("/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret),
                     environ_base=environ)


def test_guessing_a_client_secret_is_stopped_with_429_and_retry_after(http, machine):
    client, secret = machine
    answers = [client_credentials(http, client.client_id, f"guess-{i}").status_code
               for i in range(budget(ratelimit.CLIENT_AUTH_FAILURES))]
    assert answers == [401] * budget(ratelimit.CLIENT_AUTH_FAILURES)
    blocked = client_credentials(http, client.client_id, "guess-last")
    assert blocked.status_code == 429
    assert blocked.json["error"] == "too_many_requests"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert blocked.headers["Cache-Control"] == "no-store" and blocked.mimetype == "application/json"
    # the right secret does not get through either: a lucky guess must not be confirmed
    assert client_credentials(http, client.client_id, secret).status_code == 429


def test_the_budget_is_per_address(http, machine):
    client, secret = machine
    for i in range(budget(ratelimit.CLIENT_AUTH_FAILURES) + 1):
        client_credentials(http, client.client_id, f"guess-{i}")
    assert client_credentials(http, client.client_id, secret, NEIGHBOUR).status_code == 200


def test_revoke_and_introspect_share_the_budget(http, machine):
    client, secret = machine
    half = budget(ratelimit.CLIENT_AUTH_FAILURES) // 2
    for i in range(half):
        assert http.post("/introspect", data={"token": "x"}, headers=basic(client.client_id, f"g{i}"),
                         environ_base=ATTACKER).status_code == 401
    for i in range(budget(ratelimit.CLIENT_AUTH_FAILURES) - half):
        assert http.post("/revoke", data={"token": "x"}, headers=basic("unknown-client", f"g{i}"),
                         environ_base=ATTACKER).status_code == 401
    assert client_credentials(http, client.client_id, secret).status_code == 429
    assert http.post("/introspect", data={"token": "x"}, headers=basic(client.client_id, secret),
                     environ_base=ATTACKER).status_code == 429


def test_successes_and_grant_errors_cost_nothing(http, machine):
    client, secret = machine
    for _ in range(budget(ratelimit.CLIENT_AUTH_FAILURES) + 5):
        assert client_credentials(http, client.client_id, secret).status_code == 200
        refused = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": "nope"},
                            headers=basic(client.client_id, secret), environ_base=ATTACKER)
        assert refused.status_code == 400  # unauthorized_client / invalid_grant: authenticated, not counted
    assert client_credentials(http, client.client_id, "wrong").status_code == 401


def authorize_params(app_client):
    _, challenge = pkce_pair()
    return {"response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid"}


def test_authorize_floods_are_stopped_with_an_error_page(http, public_app):
    for _ in range(budget(ratelimit.AUTHORIZE)):
        answer = http.get("/authorize", query_string=authorize_params(public_app), environ_base=ATTACKER)
        assert answer.status_code == 303
    blocked = http.get("/authorize", query_string=authorize_params(public_app), environ_base=ATTACKER)
    assert blocked.status_code == 429 and blocked.mimetype == "text/html"
    assert "Location" not in blocked.headers and 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert "Too many" in blocked.get_data(as_text=True)
    assert http.post("/authorize", data=authorize_params(public_app), environ_base=ATTACKER).status_code == 429
    assert http.get("/authorize", query_string=authorize_params(public_app), environ_base=NEIGHBOUR).status_code == 303


def test_login_callback_floods_are_stopped(settings, tmp_path):
    """The callback exists when the upstream broker is installed (here: the development IdP)."""
    app = create_app(dataclasses.replace(development(settings), rate_limits_enabled=True))
    http = app.test_client()
    try:
        answers = [http.get("/login/callback?state=forged&code=x", environ_base=ATTACKER).status_code
                   for _ in range(budget(ratelimit.LOGIN_CALLBACK))]
        assert set(answers) == {400}
        blocked = http.get("/login/callback?state=forged&code=x", environ_base=ATTACKER)
        assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert http.get("/login/callback?state=forged", environ_base=NEIGHBOUR).status_code == 400
    finally:
        app.extensions["identity"].store.close()


def test_email_change_floods_are_stopped(http):
    answers = {http.post("/me/email/change", data={"action": "start"}, environ_base=ATTACKER).status_code
               for _ in range(budget(ratelimit.EMAIL_CHANGE))}
    assert answers == {400}  # no CSRF token: refused, and counted all the same
    blocked = http.post("/me/email/change", data={"action": "start"}, environ_base=ATTACKER)
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert http.post("/me/email/change", data={"action": "start"}, environ_base=NEIGHBOUR).status_code == 400


def test_switched_off_means_no_limit(settings):
    app = create_app(settings)  # the shared settings switch rate limiting off
    try:
        assert ratelimit.EXTENSION not in app.extensions
        answers = {client_credentials(app.test_client(), "unknown-client", "wrong").status_code
                   for _ in range(budget(ratelimit.CLIENT_AUTH_FAILURES) + 5)}
        assert answers == {401}
    finally:
        app.extensions["identity"].store.close()


def test_unusable_storage_is_refused_at_start_naming_the_variable(settings):
    for uri in ("bogus://x", "redis://127.0.0.1:1"):  # no such scheme; no redis driver installed
        with pytest.raises(ConfigError, match="IDENTITY_RATE_LIMIT_STORAGE_URI"):
            create_app(dataclasses.replace(settings, rate_limits_enabled=True, rate_limit_storage_uri=uri))


def test_a_failing_counter_store_fails_open_and_logs(http, machine, limited_app, monkeypatch, caplog):
    client, secret = machine
    limiter = limited_app.extensions[ratelimit.EXTENSION]

    def broken(*args, **kwargs):
        raise ConnectionError("counter storage down")

    monkeypatch.setattr(limiter.limiter, "test", broken)
    monkeypatch.setattr(limiter.limiter, "hit", broken)
    assert client_credentials(http, client.client_id, secret).status_code == 200
    assert client_credentials(http, client.client_id, "wrong").status_code == 401
    assert "rate limit storage failed" in caplog.text


def test_no_request_hooks_so_the_token_fast_path_stays_available(limited_app):
    assert not any(limited_app.before_request_funcs.values())
    assert not any(limited_app.teardown_request_funcs.values())
    assert [f.__qualname__ for f in limited_app.after_request_funcs[None]] == [
        "install_security_headers.<locals>._headers"]
