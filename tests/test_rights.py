"""Data-subject rights end to end: /me, export, erasure, restriction, rectification, retention."""

from __future__ import annotations

import json

import pytest

from identity.audit import AuditLog
from identity.oauth.authorize import ErrorPage
from identity.sealing import Opener
from identity.vault import IDENTITIES
from tests.breach_support import dpo_private_key
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import pkce_pair, query_of
from tests.test_oauth_flow import basic

SELF = "https://id.example.test/me"


@pytest.fixture
def services(oauth_app):
    return oauth_app.extensions["identity"]


@pytest.fixture
def self_app(oauth):
    client, _ = oauth.clients.register(name="Account app", public=True, redirect_uris=[REDIRECT_URI],
                                       grant_types=None, scopes=["openid", "identity:self", "records:read"],
                                       audiences=[SELF, API])
    return client


def login(oauth_client, app_client, *, resource=SELF, scope="identity:self"):
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": scope, "resource": resource})
    code = query_of(response.headers["Location"]).get("code")
    assert code, response.headers["Location"]
    tokens = oauth_client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                               "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
                                               "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.json
    return tokens.json


def bearer(tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_me_shows_the_person_their_record_and_apps(oauth_client, self_app, services, broker):
    tokens = login(oauth_client, self_app)
    me = oauth_client.get("/me", headers=bearer(tokens))
    assert me.status_code == 200, me.get_data(as_text=True)
    body = me.json
    assert body["pseudonym"] == services.vault.resolve_or_create(broker.email).identity.pseudonym
    assert body["status"] == "active" and body["created_at"] and body["last_login_at"]
    assert [a["client_id"] for a in body["apps"]] == [self_app.client_id]
    assert body["apps"][0]["name"] == "Account app"
    assert "example.org" not in me.get_data(as_text=True)


def test_export_is_machine_readable_json(oauth_client, self_app):
    tokens = login(oauth_client, self_app)
    response = oauth_client.get("/me/export", headers=bearer(tokens))
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    export = json.loads(response.get_data())
    assert export["format"] == "identity-service-export/1"
    assert export["identity"]["status"] == "active" and export["grants"]
    assert "sealed" in export["email_address"]


def test_me_needs_the_self_audience_and_scope(oauth_client, self_app):
    assert oauth_client.get("/me").status_code == 401
    assert "Bearer" in oauth_client.get("/me").headers["WWW-Authenticate"]
    other_audience = login(oauth_client, self_app, resource=API, scope="records:read")
    assert oauth_client.get("/me", headers=bearer(other_audience)).status_code == 401
    no_scope = login(oauth_client, self_app, scope="openid")
    denied = oauth_client.get("/me", headers=bearer(no_scope))
    assert denied.status_code == 403 and "insufficient_scope" in denied.headers["WWW-Authenticate"]


def test_erasure_forgets_the_email_and_ends_every_session(
        oauth_client, self_app, services, broker, service_client, keys_dir):
    api_session = login(oauth_client, self_app, resource=API, scope="records:read")
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]

    erased = oauth_client.delete("/me", headers=bearer(tokens))
    assert erased.status_code == 200 and erased.json["status"] == "erased"

    doc = services.store.get(IDENTITIES, pseudonym)
    assert doc["blind_index"] is None and doc["sealed_email"] is None and doc["status"] == "erased"
    # no endpoint, token or refresh brings anything back
    assert oauth_client.get("/me", headers=bearer(tokens)).status_code == 401
    rs, secret = service_client
    for token in (api_session["access_token"], api_session["refresh_token"], tokens["refresh_token"]):
        answer = oauth_client.post("/introspect", data={"token": token}, headers=basic(rs.client_id, secret))
        assert answer.json == {"active": False}
    refresh = oauth_client.post("/token", data={"grant_type": "refresh_token", "client_id": self_app.client_id,
                                                "refresh_token": api_session["refresh_token"]})
    assert refresh.status_code == 400
    # a later login with the same e-mail gets a new pseudonym, unlinkable to the old one
    again = login(oauth_client, self_app)
    new_pseudonym = oauth_client.get("/me", headers=bearer(again)).json["pseudonym"]
    assert new_pseudonym != pseudonym
    new_doc = services.store.get(IDENTITIES, new_pseudonym)
    assert pseudonym not in json.dumps(new_doc)
    # even the DPO key opens nothing for the old pseudonym
    opener = Opener(dpo_private_key(keys_dir))
    assert opener.open(new_doc["sealed_email"]) == broker.email.encode()
    assert services.store.get(IDENTITIES, pseudonym)["sealed_email"] is None
    records = [r for r in AuditLog(services.store).records() if r["action"] == "subjects.erase"]
    assert records and records[0]["details"] == {"pseudonym": pseudonym}
    assert broker.email not in json.dumps(records)


def test_restriction_blocks_tokens_at_once_and_is_reversible(oauth_client, self_app, services, service_client):
    tokens = login(oauth_client, self_app, resource=API, scope="records:read")
    rs, secret = service_client
    pseudonym = services.store.find(IDENTITIES, {}).__next__()["pseudonym"]
    services.rights.restrict(pseudonym, actor="ops", reason="dispute")
    assert oauth_client.post("/introspect", data={"token": tokens["access_token"]},
                             headers=basic(rs.client_id, secret)).json == {"active": False}
    refresh = oauth_client.post("/token", data={"grant_type": "refresh_token", "client_id": self_app.client_id,
                                                "refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 400
    verifier, challenge = pkce_pair()
    blocked = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": self_app.client_id, "code_challenge": challenge,
        "code_challenge_method": "S256", "resource": API})
    assert query_of(blocked.headers["Location"])["error"] == "access_denied"
    services.rights.unrestrict(pseudonym, actor="ops", reason="resolved")
    assert oauth_client.post("/introspect", data={"token": tokens["access_token"]},
                             headers=basic(rs.client_id, secret)).json["active"] is True


def test_rectification_rekeys_the_same_pseudonym_and_forgets_the_old_address(
        oauth_client, self_app, services, broker, oauth):
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]
    started = oauth_client.post("/me/email", headers=bearer(tokens))
    assert started.status_code == 200
    ticket = query_of(started.json["verification_url"])["ticket"]

    broker.email = "new.address@example.net"  # the person proves the new address upstream
    page = oauth_client.get("/me/email/verify", query_string={"ticket": ticket})
    assert page.status_code == 303 and page.headers["Location"].endswith("/me/email/changed")
    assert oauth_client.get(page.headers["Location"]).status_code == 200

    assert services.vault.resolve_or_create("new.address@example.net").identity.pseudonym == pseudonym
    old = services.vault.resolve_or_create("person@example.org")
    assert old.created and old.identity.pseudonym != pseudonym
    assert oauth_client.get("/me/email/verify", query_string={"ticket": ticket}).status_code == 400


def test_rectification_to_an_address_in_use_changes_nothing(oauth, self_app, services, oauth_client):
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]
    taken = services.vault.resolve_or_create("taken@example.org").identity.pseudonym
    ticket = query_of(oauth_client.post("/me/email", headers=bearer(tokens)).json["verification_url"])["ticket"]
    with pytest.raises(ErrorPage, match="another account"):
        oauth.authorizer.complete(ticket, "taken@example.org")
    assert services.vault.resolve_or_create("person@example.org").identity.pseudonym == pseudonym
    assert services.vault.resolve_or_create("taken@example.org").identity.pseudonym == taken


def test_retention_purge_erases_inactive_identities_and_expired_state(oauth_client, self_app, services, clock):
    login(oauth_client, self_app)
    stale = services.vault.resolve_or_create("stale@example.org").identity.pseudonym
    clock.advance(400 * 86400)
    fresh_tokens = login(oauth_client, self_app)  # the logged-in person stays
    dry = services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=True)
    assert dry.identities == 1 and dry.expired["authorization_codes"] >= 1
    assert services.store.get(IDENTITIES, stale)["status"] == "active"
    report = services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False)
    assert report.identities == 1
    assert services.store.get(IDENTITIES, stale)["status"] == "erased"
    assert oauth_client.get("/me", headers=bearer(fresh_tokens)).status_code == 200
    assert services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False).identities == 0
    assert [r["action"] for r in AuditLog(services.store).records()].count("subjects.purge") == 2


@pytest.mark.parametrize("text, seconds", [("90d", 90 * 86400), ("2w", 14 * 86400), ("1y", 31557600),
                                           ("24m", int(24 * 30.4375 * 86400))])
def test_periods(text, seconds):
    from identity.rights import parse_period

    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "m", "0m", "-1m", "24x", "1.5y"])
def test_bad_periods(text):
    from identity.rights import parse_period

    with pytest.raises(ValueError):
        parse_period(text)
