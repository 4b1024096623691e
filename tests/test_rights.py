"""Data-subject rights end to end: /me, export, erasure, restriction, rectification, retention."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

import pytest

from identity import create_app
from identity.audit import AuditLog
from identity.oauth.subjects import PersonErased
from identity.pairwise import ERASED
from identity.retention import parse_period
from identity.rights import ERASURES, STATUS_CHANGE_GRACE, STATUS_CHANGES, NotAllowed, UnknownSubject
from identity.sealing import Opener
from identity.store import StoreUnavailable
from identity.vault import IDENTITIES, Vault
from tests.breach_support import dpo_private_key
from tests.conftest import API, REDIRECT_URI, make_store
from tests.lookup_support import present
from tests.oauth_helpers import pkce_pair, query_of
from tests.test_oauth_flow import basic
from tests.upstream_support import parse_form

ISSUER = "https://id.example.test"
SELF = f"{ISSUER}/me"


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


@pytest.mark.parametrize("ending", ["remove access", "close", "erase"])
def test_an_exchange_caught_between_its_checks_and_its_grant_creates_nothing_live(
        oauth_client, self_app, services, monkeypatch, ending):
    """The app's code exchange has passed its checks when the person's access ends (they remove the app, the
    account is closed or erased); the grant it then creates must not be live, nor any token issued."""
    login(oauth_client, self_app)
    pseudonym = next(services.store.find(IDENTITIES, {}))["pseudonym"]
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": self_app.client_id, "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "identity:self", "resource": SELF})
    code = query_of(response.headers["Location"])["code"]
    grants, create = services.oauth.grants, services.oauth.grants.create
    end = {"remove access": lambda: services.rights.remove_access(pseudonym, self_app.client_id, actor="subject",
                                                                  reason="the person removed the app"),
           "close": lambda: services.rights.close(pseudonym, actor="ops", reason="cancelled"),
           "erase": lambda: services.rights.erase(pseudonym, actor="ops", reason="asked")}[ending]

    def create_after_the_ending(**fields):
        end()
        return create(**fields)
    monkeypatch.setattr(grants, "create", create_after_the_ending)
    exchanged = oauth_client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                                  "client_id": self_app.client_id, "redirect_uri": REDIRECT_URI,
                                                  "code_verifier": verifier})
    assert exchanged.status_code == 400 and exchanged.json["error"] == "invalid_grant", exchanged.json
    assert grants.active_for_subject(pseudonym) == []


def bearer(tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_me_shows_the_person_their_record_and_apps(oauth_client, self_app, services, broker):
    tokens = login(oauth_client, self_app)
    me = oauth_client.get("/me", headers=bearer(tokens))
    assert me.status_code == 200, me.get_data(as_text=True)
    body = me.json
    assert body["pseudonym"] == services.vault.pseudonymise(broker.email).identity.pseudonym
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


@pytest.mark.parametrize(("path", "method"), [("/me/export", "export"), ("/me", "describe")])
def test_an_erasure_landing_while_me_answers_is_refused_without_a_500_or_the_pseudonym_logged(
        oauth_client, self_app, services, monkeypatch, caplog, path, method):
    """The person's DELETE /me (another tab) or an operator's erasure commits after the token's checks saw the
    person active: the answer is the invalid_token a moment later would get, and no log line names them."""
    tokens = login(oauth_client, self_app)
    pseudonym = next(services.store.find(IDENTITIES, {}))["pseudonym"]
    rights = services.rights
    real = getattr(rights, method)

    def erased_meanwhile(subject):
        rights.erase(subject, actor="subject", reason="erasure requested by the person")
        return real(subject)

    monkeypatch.setattr(rights, method, erased_meanwhile)
    caplog.set_level(logging.DEBUG)
    response = oauth_client.get(path, headers=bearer(tokens))
    assert response.status_code == 401 and response.json["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.headers["Cache-Control"] == "no-store"
    logged = [r.getMessage() for r in caplog.records] + [repr(vars(r)) for r in caplog.records]
    assert not any(pseudonym in line for line in logged)


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


def change_email(oauth_client, broker, new: str):
    """Both sign-ins on the change page; the stand-in broker signs in as ``broker.email`` at once."""
    form = parse_form(oauth_client.get("/me/email/change").get_data(as_text=True))
    step1 = oauth_client.post(form.action, data={**form.fields, "action": "start"})
    assert step1.status_code == 303 and step1.headers["Location"] == f"{ISSUER}/me/email/change", step1.data
    form = parse_form(oauth_client.get("/me/email/change").get_data(as_text=True))
    broker.email = new  # the person proves the new address upstream
    return oauth_client.post(form.action, data={**form.fields, "action": "continue"})


def test_rectification_rekeys_the_same_pseudonym_and_forgets_the_old_address(
        oauth_client, self_app, services, broker, oauth):
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]
    started = oauth_client.post("/me/email", headers=bearer(tokens))
    assert started.status_code == 200 and started.json == {"verification_url": f"{ISSUER}/me/email/change"}

    done = change_email(oauth_client, broker, "new.address@example.net")
    assert done.status_code == 303 and done.headers["Location"] == f"{ISSUER}/me/email/changed"
    assert oauth_client.get("/me/email/changed").status_code == 200  # this browser sees its own result

    assert services.vault.pseudonymise("new.address@example.net").identity.pseudonym == pseudonym
    old = services.vault.pseudonymise("person@example.org")
    assert old.created and old.identity.pseudonym != pseudonym
    assert oauth_client.get("/me", headers=bearer(tokens)).status_code == 401  # every session ended


def test_rectification_to_an_address_in_use_changes_nothing(oauth, self_app, services, oauth_client, broker):
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]
    taken = services.vault.pseudonymise("taken@example.org").identity.pseudonym
    refused = change_email(oauth_client, broker, "taken@example.org")
    assert refused.status_code == 400 and "another account" in refused.get_data(as_text=True)
    assert services.vault.pseudonymise("person@example.org").identity.pseudonym == pseudonym
    assert services.vault.pseudonymise("taken@example.org").identity.pseudonym == taken
    assert oauth_client.get("/me", headers=bearer(tokens)).status_code == 200  # nothing was revoked


def test_retention_purge_erases_inactive_identities_and_expired_state(oauth_client, self_app, services, clock):
    old_tokens = login(oauth_client, self_app)
    oauth_client.post("/revoke", data={"client_id": self_app.client_id, "token": old_tokens["access_token"]})
    stale = services.vault.pseudonymise("stale@example.org").identity.pseudonym
    clock.advance(400 * 86400)
    fresh_tokens = login(oauth_client, self_app)  # the logged-in person stays
    dry = services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=True)
    assert dry.identities == 1 and dry.expired["authorization_codes"] >= 1
    assert dry.expired["revoked_access_tokens"] == 1  # kept only until the token itself expired
    assert services.store.get(IDENTITIES, stale)["status"] == "active"
    report = services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False)
    assert report.identities == 1
    assert services.store.get(IDENTITIES, stale)["status"] == "erased"
    assert oauth_client.get("/me", headers=bearer(fresh_tokens)).status_code == 200
    assert services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False).identities == 0
    assert [r["action"] for r in AuditLog(services.store).records()].count("subjects.purge") == 2


# -- cancellation: closed accounts are erased within two months ---------------------------------------


def test_closing_ends_every_session_at_once_and_refuses_new_ones(oauth_client, self_app, services, service_client):
    tokens = login(oauth_client, self_app, resource=API, scope="records:read")
    pseudonym = services.store.find(IDENTITIES, {}).__next__()["pseudonym"]
    closed = services.rights.close(pseudonym, actor="ops", reason="customer cancelled, ticket 7")
    assert closed == {"pseudonym": pseudonym, "status": "closed", "grants_revoked": 1}
    rs, secret = service_client
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert oauth_client.post("/introspect", data={"token": token},
                                 headers=basic(rs.client_id, secret)).json == {"active": False}
    refresh = oauth_client.post("/token", data={"grant_type": "refresh_token", "client_id": self_app.client_id,
                                                "refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 400
    verifier, challenge = pkce_pair()
    blocked = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": self_app.client_id, "code_challenge": challenge,
        "code_challenge_method": "S256", "resource": API})
    assert query_of(blocked.headers["Location"])["error"] == "access_denied"
    # the e-mail is still held until the purge: a breach notice can still reach the person
    assert services.store.get(IDENTITIES, pseudonym)["sealed_email"]
    with pytest.raises(UnknownSubject):
        services.rights.restrict(pseudonym, actor="ops", reason="only an active account can be restricted")
    # withdrawn before the purge: the account is active again (the apps need a new login)
    assert services.rights.reopen(pseudonym, actor="ops", reason="changed their mind")["status"] == "active"
    assert login(oauth_client, self_app)["access_token"]
    actions = [r["action"] for r in AuditLog(services.store).records()]
    assert actions == ["subjects.close", "subjects.reopen"]


def test_a_daily_purge_with_its_defaults_erases_a_closed_account_within_two_months(
        oauth_client, self_app, services, clock):
    login(oauth_client, self_app)
    pseudonym = services.store.find(IDENTITIES, {}).__next__()["pseudonym"]
    services.rights.close(pseudonym, actor="ops", reason="customer cancelled")
    closed_at = clock.now
    clock.advance(3 * 3600)  # the timer fires at 03:15, whenever the account was closed
    while services.store.get(IDENTITIES, pseudonym)["status"] == "closed":
        assert clock.now - closed_at < parse_period("2m"), "not erased within 2 months of cancellation"
        report = services.rights.purge(actor="timer", dry_run=False)
        clock.advance(86400)
    assert report.cancelled == 1 and report.identities == 1
    assert 30 * 86400 <= clock.now - 86400 - closed_at < parse_period("2m")
    assert services.store.get(IDENTITIES, pseudonym)["sealed_email"] is None
    record = [r for r in AuditLog(services.store).records() if r["action"] == "subjects.purge"][-1]
    assert record["counts"]["cancelled_erased"] == 1 and pseudonym not in json.dumps(record)


def test_the_dry_run_counts_closed_and_inactive_accounts_once_each(oauth_client, self_app, services, clock):
    closed = services.vault.pseudonymise("closed@example.org").identity.pseudonym
    services.vault.pseudonymise("idle@example.org")
    services.rights.close(closed, actor="ops", reason="cancelled")
    clock.advance(800 * 86400)  # past both periods
    dry = services.rights.purge(actor="ops", dry_run=True)
    assert (dry.identities, dry.cancelled) == (2, 1)
    assert services.store.get(IDENTITIES, closed)["status"] == "closed"


def test_purge_refuses_a_cancellation_period_beyond_the_promise(services):
    with pytest.raises(ValueError, match="2 months"):
        services.rights.purge(actor="ops", dry_run=False, cancelled_for=parse_period("3m"))
    assert [r["action"] for r in AuditLog(services.store).records()] == []


def test_readyz_reports_the_last_purge_and_flags_it_stale_without_failing(oauth_client, services, clock):
    never = oauth_client.get("/readyz")
    assert never.status_code == 200 and never.json["status"] == "ready"
    assert never.json["retention"]["last_purge_at"] is None and never.json["retention"]["stale"] is True
    services.rights.purge(actor="timer", dry_run=True)  # a dry run is not a purge
    assert oauth_client.get("/readyz").json["retention"]["last_purge_at"] is None
    services.rights.purge(actor="timer", dry_run=False)
    clock.advance(3600)
    fresh = oauth_client.get("/readyz").json["retention"]
    assert fresh["last_purge_timestamp"] == int(clock.now) - 3600 and fresh["age_seconds"] == 3600
    assert fresh["last_purge_at"].endswith("Z") and fresh["stale"] is False
    clock.advance(26 * 3600)  # the daily run was missed
    late = oauth_client.get("/readyz")
    assert late.status_code == 200 and late.json["retention"]["stale"] is True


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


# -- pairwise subjects in the rights ------------------------------------------------------------------


def test_the_export_lists_the_persons_subject_in_each_sector_with_its_services(
        oauth_client, oauth, self_app, services, broker):
    oauth.audiences.add("https://diary.example.org", key=oauth.audiences.encryption_key(oauth.audiences.get(API)),
                        jwks_uri=None, sector="health.example")
    login(oauth_client, self_app, resource=API, scope="openid records:read")  # an ID token too
    tokens = login(oauth_client, self_app)
    export = json.loads(oauth_client.get("/me/export", headers=bearer(tokens)).get_data())
    pseudonym = services.vault.pseudonymise(broker.email).identity.pseudonym
    subjects = services.oauth.subjects
    listed = {entry["sector"]: entry for entry in export["subjects"]["sectors"]}
    assert listed[API]["subject"] == subjects.subject_for(pseudonym, audience=API)
    assert listed[API]["services"] == [API]
    assert listed["app.example.org"]["services"] == ["app: Account app"]  # the app's ID tokens
    assert "health.example" not in listed  # no subject was ever issued there
    assert "sector" in export["subjects"]["note"]


def test_the_exports_history_comes_from_the_index_not_a_scan_of_the_audit_log(
        oauth_client, self_app, services, monkeypatch):
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]
    services.rights.restrict(pseudonym, actor="ops", reason="dispute")
    services.rights.unrestrict(pseudonym, actor="ops", reason="resolved")
    for n in range(300):  # other people's records: the export must not read them
        services.audit.append(actor="ops", action="clients.add", details={"client_id": f"c{n}"})
    services.rights.export(pseudonym)  # the one-off backfill of records from before the index
    read = []
    real_find = services.store.find

    def counting_find(coll, where, **kwargs):
        found = list(real_find(coll, where, **kwargs))
        if coll.name == "audit_log":
            read.extend(found)
        return iter(found)

    monkeypatch.setattr(services.store, "find", counting_find)
    export = services.rights.export(pseudonym)
    assert [h["action"] for h in export["history"]] == ["subjects.restrict", "subjects.unrestrict"]
    assert len(read) == 2  # the person's two records, whatever the log's length


def test_records_from_before_the_index_are_found_once_backfilled(oauth_client, self_app, services):
    from identity.audit_index import AUDIT_INDEXES, AUDIT_SUBJECTS
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]
    services.rights.restrict(pseudonym, actor="ops", reason="dispute")
    services.store.delete(AUDIT_SUBJECTS, {})  # as if written by a release without the index
    services.store.delete(AUDIT_INDEXES, {})
    assert [h["action"] for h in services.rights.export(pseudonym)["history"]] == ["subjects.restrict"]
    assert services.store.count(AUDIT_INDEXES, {}) == 1


def test_an_index_row_that_disagrees_with_the_signed_record_is_ignored(oauth_client, self_app, services):
    from identity.audit_index import AUDIT_SUBJECTS
    tokens = login(oauth_client, self_app)
    pseudonym = oauth_client.get("/me", headers=bearer(tokens)).json["pseudonym"]
    services.rights.export(pseudonym)
    other = services.audit.append(actor="ops", action="clients.add", details={"client_id": "x"})
    services.store.insert(AUDIT_SUBJECTS, {"seq": other["seq"], "pseudonym": pseudonym})  # planted in the store
    assert services.rights.export(pseudonym)["history"] == []


def test_the_retention_purge_forgets_every_pairwise_subject_of_those_it_erases(oauth_client, self_app, services, clock):
    login(oauth_client, self_app, resource=API, scope="records:read")
    person = services.vault.pseudonymise("person@example.org").identity.pseudonym
    subject = services.oauth.subjects.subject_for(person, audience=API)
    assert services.oauth.subjects.resolve(API, subject) == person
    clock.advance(800 * 86400)
    assert services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False).identities == 1
    assert services.oauth.subjects.resolve(API, subject) is None
    assert services.oauth.subjects.map.resolve(API, subject) == "erased"


def test_me_believes_a_header_reference_only_for_the_token_it_came_with(oauth_client, self_app, services):
    """Whoever can encrypt to the self audience (its key is public) could put a live token's ``ref`` on a
    revoked token's body; /me checks that the reference and the verified token name the same jti."""
    from joserfc import jwe
    from joserfc.jwk import RSAKey

    from identity.oauth.self_audience import self_encryption_key
    from identity.tokens import JWE_REGISTRY
    from tests.oauth_helpers import b64json

    live, revoked = login(oauth_client, self_app), login(oauth_client, self_app)
    oauth_client.post("/revoke", data={"client_id": self_app.client_id, "token": revoked["access_token"]})
    assert oauth_client.get("/me", headers=bearer(revoked)).status_code == 401
    private = RSAKey.import_key(services.keyring.self_encryption_key)
    inner = present(jwe.decrypt_compact(revoked["access_token"], private, registry=JWE_REGISTRY).plaintext)
    spliced = jwe.encrypt_compact(b64json(live["access_token"].split(".")[0]), inner,
                                  self_encryption_key(services.keyring).key, registry=JWE_REGISTRY)
    assert oauth_client.get("/me", headers=bearer({"access_token": spliced})).status_code == 401
    assert oauth_client.get("/me", headers=bearer(live)).status_code == 200


# -- an interrupted erasure or unrestriction can be finished ------------------------------------------


def fail_once(monkeypatch, target: object, name: str) -> None:
    """``target.name`` raises ``StoreUnavailable`` on its next call (a failover), then works again."""
    real = getattr(target, name)

    def failing(*args, **kwargs):
        monkeypatch.setattr(target, name, real)
        raise StoreUnavailable("primary stepped down")
    monkeypatch.setattr(target, name, failing)


def person_with_everything(services, *, restricted: bool = True) -> tuple[str, str]:
    """A self-restricted person (unless ``restricted`` is false) with a consent, a waiting consent, a live grant and
    an account session: (pseudonym, account session id)."""
    pseudonym = services.vault.pseudonymise("half@example.org").identity.pseudonym
    services.oauth.consents.grant(pseudonym, "client-a", ["openid"], API)
    services.oauth.consents.park({"client_id": "client-a"}, pseudonym)
    services.oauth.grants.create(grant_id="g-half", client_id="client-a", subject=pseudonym, audience=API,
                                 scope="openid")
    session = services.account_sessions.start(pseudonym)
    if restricted:
        services.rights.restrict(pseudonym, actor="subject", reason="account page", by_subject=True)
    return pseudonym, session


def assert_nothing_of_the_person_remains(services, pseudonym: str, session: str) -> None:
    from identity.oauth.consent import PENDING_CONSENTS
    assert services.vault.find(pseudonym).status == "erased"
    assert services.oauth.consents.for_subject(pseudonym) == []
    assert services.store.count(PENDING_CONSENTS, {"subject": pseudonym}) == 0
    assert services.oauth.grants.get("g-half").revoked
    assert services.account_sessions.find(session) is None
    assert not services.rights.restricted_by_subject(pseudonym)


def erase_records(services, pseudonym: str) -> list[dict]:
    return [r for r in AuditLog(services.store).records()
            if r["action"] == "subjects.erase" and r["details"] == {"pseudonym": pseudonym}]


def test_an_erasure_interrupted_after_the_vault_write_is_finished_by_erasing_again(services, monkeypatch):
    pseudonym, session = person_with_everything(services)
    fail_once(monkeypatch, services.rights._grants, "revoke_all_for_subject")
    with pytest.raises(StoreUnavailable):
        services.rights.erase(pseudonym, actor="ops", reason="Art. 17 request")
    assert services.vault.find(pseudonym).status == "erased" and erase_records(services, pseudonym) == []

    again = services.rights.erase(pseudonym, actor="ops", reason="Art. 17 request, again")
    assert again == {"pseudonym": pseudonym, "status": "erased", "grants_revoked": 1}
    assert_nothing_of_the_person_remains(services, pseudonym, session)
    [record] = erase_records(services, pseudonym)
    assert record["actor"] == "ops" and record["reason"] == "Art. 17 request, again"
    with pytest.raises(UnknownSubject):  # finished: erasing once more is refused, as for any erased person
        services.rights.erase(pseudonym, actor="ops", reason="thrice")


def test_the_purge_finishes_an_interrupted_erasure_and_audits_it_as_asked(services, monkeypatch):
    pseudonym, session = person_with_everything(services)
    fail_once(monkeypatch, services.rights._grants, "revoke_all_for_subject")
    with pytest.raises(StoreUnavailable):
        services.rights.erase(pseudonym, actor="ops", reason="Art. 17 request")

    report = services.rights.purge(actor="cron", dry_run=False)
    assert_nothing_of_the_person_remains(services, pseudonym, session)
    [record] = erase_records(services, pseudonym)
    assert record["actor"] == "ops" and record["reason"] == "Art. 17 request"
    assert report.finished == 1 and report.identities == 0
    assert services.rights.purge(actor="cron", dry_run=False).finished == 0


def test_an_erasure_the_purge_could_not_finish_is_finished_by_the_next_purge(services, clock, monkeypatch):
    # grants and sessions expire meanwhile; consents do not. Not restricted: the purge keeps a restricted person
    pseudonym, _ = person_with_everything(services, restricted=False)
    clock.advance(800 * 86400)
    fail_once(monkeypatch, services.rights._grants, "revoke_all_for_subject")
    with pytest.raises(StoreUnavailable):
        services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False)
    assert services.vault.find(pseudonym).status == "erased"
    assert services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=True).finished == 1

    report = services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False)
    assert services.oauth.consents.for_subject(pseudonym) == []
    assert report.finished == 1 and report.identities == 0
    assert erase_records(services, pseudonym) == []  # the purge's own: counted, never named, in its record
    purge = [r for r in AuditLog(services.store).records() if r["action"] == "subjects.purge"][-1]
    assert purge["counts"]["erasures_finished"] == 1 and pseudonym not in json.dumps(purge)


def test_an_interrupted_unrestriction_leaves_no_mark_that_outlives_the_restriction(services, monkeypatch):
    rights = services.rights
    pseudonym = services.vault.pseudonymise("marked@example.org").identity.pseudonym
    rights.restrict(pseudonym, actor="subject", reason="account page", by_subject=True)
    fail_once(monkeypatch, rights._store, "delete")
    with pytest.raises(StoreUnavailable):
        rights.unrestrict(pseudonym, actor="ops", reason="ticket 7")
    assert services.vault.find(pseudonym).status == "restricted"  # nothing changed: the operator tries again
    rights.unrestrict(pseudonym, actor="ops", reason="ticket 7, again")
    assert services.vault.find(pseudonym).status == "active" and not rights.restricted_by_subject(pseudonym)


def test_an_operators_restriction_removes_a_mark_left_behind_so_the_person_cannot_lift_it(services):
    from identity.rights import SELF_RESTRICTIONS
    rights = services.rights
    pseudonym = services.vault.pseudonymise("marked@example.org").identity.pseudonym
    services.store.insert(SELF_RESTRICTIONS, {"pseudonym": pseudonym, "restricted_at": 0})  # left by a crash
    rights.restrict(pseudonym, actor="ops", reason="Art. 18(1)(a): accuracy contested")
    assert not rights.restricted_by_subject(pseudonym)
    with pytest.raises(NotAllowed):
        rights.unrestrict(pseudonym, actor="subject", reason="account page", by_subject=True)
    assert services.vault.find(pseudonym).status == "restricted"


# -- the retention purge keeps whom it must keep --------------------------------------------------------


@pytest.fixture
def on_each_store(settings, store, clock):
    """The services over each store backend (SQLite, MongoDB under mongomock), on the test's clock."""
    return create_app(settings, store=store, clock=clock).extensions["identity"]


def test_the_inactivity_purge_keeps_restricted_accounts(on_each_store, clock):
    """docs/rights.md: a restricted account is kept, as Art. 18 requires, however long nobody signs in."""
    services = on_each_store
    idle, disputed, paused = (services.vault.pseudonymise(f"{name}@example.org").identity.pseudonym
                              for name in ("idle", "disputed", "paused"))
    services.rights.restrict(disputed, actor="ops", reason="Art. 18(1)(c): needed for a legal claim")
    services.rights.restrict(paused, actor="subject", reason="account page", by_subject=True)
    clock.advance(25 * 30.44 * 86400)  # past the default 24 months
    assert services.rights.purge(actor="timer", dry_run=True).identities == 1
    assert services.rights.purge(actor="timer", dry_run=False).identities == 1
    assert [services.vault.find(p).status for p in (idle, disputed, paused)] == ["erased", "restricted", "restricted"]
    assert services.rights.restricted_by_subject(paused)


def test_a_person_who_signs_in_while_the_purge_runs_is_kept(on_each_store, clock, monkeypatch):
    services = on_each_store
    returning, gone = (services.vault.pseudonymise(f"{name}@example.org").identity.pseudonym
                       for name in ("returning", "gone"))
    subject = services.oauth.subjects.in_sector("diary.example", returning)
    clock.advance(800 * 86400)
    read = services.vault.inactive_since

    def read_then_sign_in(cutoff: int, *, limit: int) -> list[str]:  # the batch is read; then the person is back
        batch = read(cutoff, limit=limit)
        services.vault.record_login(returning)
        return batch
    monkeypatch.setattr(services.vault, "inactive_since", read_then_sign_in)
    report = services.rights.purge(inactive_for=365 * 86400, actor="cron", dry_run=False)
    assert services.vault.find(returning).status == "active" and services.vault.find(gone).status == "erased"
    assert report.identities == 1 and services.store.count(ERASURES, {}) == 0
    assert services.oauth.subjects.resolve("diary.example", subject) == returning  # nothing of theirs forgotten


def test_an_account_reopened_while_the_purge_runs_is_kept(on_each_store, clock, monkeypatch):
    services = on_each_store
    person = services.vault.pseudonymise("undecided@example.org").identity.pseudonym
    services.rights.close(person, actor="ops", reason="cancelled, ticket 5")
    clock.advance(40 * 86400)
    read = services.vault.closed_before

    def read_then_reopen(cutoff: int, *, limit: int) -> list[str]:
        batch = read(cutoff, limit=limit)
        services.rights.reopen(person, actor="ops", reason="withdrawn, ticket 5")
        return batch
    monkeypatch.setattr(services.vault, "closed_before", read_then_reopen)
    report = services.rights.purge(actor="cron", dry_run=False)
    assert services.vault.find(person).status == "active" and report.cancelled == 0


def test_purge_refuses_a_period_beyond_a_century_before_doing_anything(on_each_store):
    services = on_each_store
    for inactive_for in (parse_period("100y") + 1, 10**12, 0):
        with pytest.raises(ValueError, match="100 years"):
            services.rights.purge(actor="ops", dry_run=False, inactive_for=inactive_for)
    assert list(AuditLog(services.store).records()) == []


def test_what_can_fail_in_a_purge_fails_before_anyone_is_erased(on_each_store, clock, monkeypatch):
    """The run's audit reason is worked out first: a failure there (a date no clock can show, as a period of
    9999y gave before periods were capped) must not leave people erased by a run neither audited nor recorded."""
    import identity.rights

    services = on_each_store
    person = services.vault.pseudonymise("leaving@example.org").identity.pseudonym
    services.rights.close(person, actor="ops", reason="contract ended")
    clock.advance(40 * 86400)

    def no_date(timestamp: float | None) -> str | None:
        raise ValueError("year -7973 is out of range")
    monkeypatch.setattr(identity.rights, "iso", no_date)
    with pytest.raises(ValueError, match="out of range"):
        services.rights.purge(actor="ops", dry_run=False)
    assert services.vault.find(person).status == "closed"


# -- erasure racing a token request -------------------------------------------------------------------


def code_for(oauth_client, app_client, *, scope: str = "records:read") -> tuple[str, str]:
    """(code, verifier) of a finished authorization request for the API."""
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": scope, "resource": API})
    return query_of(response.headers["Location"])["code"], verifier


def exchange_code(oauth_client, app_client, code: str, verifier: str):
    return oauth_client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                             "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
                                             "code_verifier": verifier})


def test_an_exchange_landing_inside_an_erasure_leaves_no_subject_that_resolves(
        oauth_client, self_app, services, monkeypatch):
    """The exchange passed its "active" check just before the erasure's vault write: the subject it recorded
    and the grant it created must not survive the erasure."""
    code, verifier = code_for(oauth_client, self_app)
    pseudonym = next(services.store.find(IDENTITIES, {}))["pseudonym"]
    real_erase, exchanged = Vault.erase, list[int]()

    def exchange_first(vault: Vault, p: str) -> bool:
        if not exchanged:
            exchanged.append(exchange_code(oauth_client, self_app, code, verifier).status_code)
        return real_erase(vault, p)
    monkeypatch.setattr(Vault, "erase", exchange_first)
    services.rights.erase(pseudonym, actor="subject", reason="asked")
    sector = services.oauth.audiences.get(API).sector
    subject = services.oauth.subjects._key.subject(sector, pseudonym)  # what the token carried
    assert exchanged == [200]
    assert services.oauth.subjects.map.resolve(sector, subject) == ERASED
    assert services.oauth.grants.active_for_subject(pseudonym) == []


def test_an_exchange_past_its_checks_when_the_erasure_ends_gets_nothing_and_records_nothing(
        oauth_client, self_app, services, monkeypatch):
    """The whole erasure lands between the exchange's "active" check and its first subject: no token, and no row
    that resolves the erased pseudonym (none is recorded for an erased person)."""
    code, verifier = code_for(oauth_client, self_app, scope="openid records:read")
    pseudonym = next(services.store.find(IDENTITIES, {}))["pseudonym"]
    grants = services.oauth.grants
    issue = grants.issue_access_token

    def erase_then_issue(**fields: Any) -> Any:
        services.rights.erase(pseudonym, actor="subject", reason="erasure requested by the person")
        return issue(**fields)
    monkeypatch.setattr(grants, "issue_access_token", erase_then_issue)
    answer = exchange_code(oauth_client, self_app, code, verifier)
    assert answer.status_code == 400 and answer.json["error"] == "invalid_grant", answer.json
    subjects = services.oauth.subjects
    for sector in subjects.map.sectors():
        assert subjects.map.resolve(sector, subjects._key.subject(sector, pseudonym)) in (None, ERASED)
    with pytest.raises(PersonErased):
        subjects.subject_for(pseudonym, audience=API)


# -- status changes survive an interruption at any step ----------------------------------------------------

STATUS_ACTIONS = ["restrict", "restrict by the person", "unrestrict", "unrestrict by the person", "close", "reopen"]


def status_change(action: str, pseudonym: str) -> tuple[Callable[[Any], dict[str, Any]], str]:
    """(the call, the status it leads to) for one of ``STATUS_ACTIONS``."""
    name, by_subject = action.split()[0], action.endswith("by the person")
    actor, extra = ("subject", {"by_subject": True}) if by_subject else ("ops", {})

    def call(services: Any) -> dict[str, Any]:
        return getattr(services.rights, name)(pseudonym, actor=actor, reason=f"{name}, ticket 9", **extra)
    return call, {"restrict": "restricted", "close": "closed"}.get(name, "active")


def person_before(services: Any, action: str) -> str:
    """A person in the status ``action`` starts from, with a grant and an account session."""
    pseudonym = services.vault.pseudonymise("changing@example.org").identity.pseudonym
    by_subject = action.endswith("by the person")
    if action.startswith("unrestrict"):
        services.rights.restrict(pseudonym, actor="subject" if by_subject else "ops", reason="before",
                                 by_subject=by_subject)
    elif action == "reopen":
        services.rights.close(pseudonym, actor="ops", reason="before")
    # live, or for reopen one that a race left live while the account was closed
    services.oauth.grants.create(grant_id="g-old", client_id="client-a", subject=pseudonym, audience=API, scope="x")
    services.account_sessions.start(pseudonym)
    return pseudonym


def failing_at(patch: pytest.MonkeyPatch, store: Any, write: int) -> list[int]:
    """Make the ``write``-th insert, update or delete on ``store`` (from 0; -1: none) raise ``StoreUnavailable``;
    returns the running count of writes."""
    count = [0]

    def counting(real: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] - 1 == write:
                raise StoreUnavailable("primary stepped down")
            return real(*args, **kwargs)
        return counted
    for name in ("insert", "update", "delete"):
        patch.setattr(store, name, counting(getattr(store, name)))
    return count


@pytest.mark.parametrize("backend", ["sqlite", "mongomock"])
@pytest.mark.parametrize("action", STATUS_ACTIONS)
def test_a_status_change_interrupted_at_any_write_is_finished_and_audited_by_asking_again(
        settings, clock, tmp_path, backend, action):
    def fresh(n: int) -> tuple[Any, str]:
        services = create_app(settings, store=make_store(backend, tmp_path / str(n)), clock=clock).extensions["identity"]
        return services, person_before(services, action)

    with pytest.MonkeyPatch.context() as patch:  # how many writes the change makes when nothing fails
        services, pseudonym = fresh(0)
        writes = failing_at(patch, services.store, -1)
        status_change(action, pseudonym)[0](services)
    assert writes[0] >= 4
    interrupted = 0
    for write in range(writes[0]):
        services, pseudonym = fresh(write + 1)
        call, status = status_change(action, pseudonym)
        audited_before = len(list(AuditLog(services.store).records()))
        with pytest.MonkeyPatch.context() as patch:
            failing_at(patch, services.store, write)
            try:
                result = call(services)  # only the audit index's write fails without failing the request
            except StoreUnavailable:
                interrupted += 1
                result = call(services)  # the same request again
        assert result["status"] == status == services.vault.find(pseudonym).status, (write, result)
        actions = [r["action"] for r in list(AuditLog(services.store).records())[audited_before:]]
        assert actions and set(actions) == {f"subjects.{action.split()[0]}"}, (write, actions)
        assert services.store.count(STATUS_CHANGES, {}) == 0
        assert services.rights.restricted_by_subject(pseudonym) == (action == "restrict by the person"), write
        if action in ("close", "reopen"):  # nothing from before the cancellation lives on
            assert services.oauth.grants.get("g-old").revoked, write
        if action == "close":
            assert services.account_sessions.end_all_for(pseudonym) == 0, write
    assert interrupted == writes[0] - 1


def test_an_interrupted_close_is_finished_by_closing_again_and_reopening_revives_nothing(
        oauth_client, self_app, services, monkeypatch):
    tokens = login(oauth_client, self_app)
    pseudonym = next(services.store.find(IDENTITIES, {}))["pseudonym"]
    fail_once(monkeypatch, services.rights._grants, "revoke_all_for_subject")
    with pytest.raises(StoreUnavailable):
        services.rights.close(pseudonym, actor="ops", reason="customer cancelled")
    assert services.rights.close(pseudonym, actor="ops", reason="customer cancelled, again")["status"] == "closed"
    services.rights.reopen(pseudonym, actor="ops", reason="changed their mind")
    refresh = oauth_client.post("/token", data={"grant_type": "refresh_token", "client_id": self_app.client_id,
                                                "refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 400
    records = [(r["action"], r["reason"]) for r in AuditLog(services.store).records()]
    assert records == [("subjects.close", "customer cancelled, again"), ("subjects.reopen", "changed their mind")]


def test_the_purge_finishes_a_status_change_nobody_asked_again(on_each_store, clock, monkeypatch):
    services = on_each_store
    pseudonym = services.vault.pseudonymise("left@example.org").identity.pseudonym
    services.oauth.grants.create(grant_id="g-left", client_id="client-a", subject=pseudonym, audience=API, scope="x")
    fail_once(monkeypatch, services.rights._grants, "revoke_all_for_subject")
    with pytest.raises(StoreUnavailable):
        services.rights.close(pseudonym, actor="ops-bob", reason="cancelled, ticket 3")
    services.rights.purge(actor="cron", dry_run=False)  # too recent: left to the request, which may still run
    assert services.store.count(STATUS_CHANGES, {}) == 1
    clock.advance(STATUS_CHANGE_GRACE + 1)
    services.rights.purge(actor="cron", dry_run=False)
    assert services.store.count(STATUS_CHANGES, {}) == 0 and services.oauth.grants.get("g-left").revoked
    records = list(AuditLog(services.store).records())
    [close] = [r for r in records if r["action"] == "subjects.close"]
    assert (close["actor"], close["reason"], close["details"]) == ("ops-bob", "cancelled, ticket 3",
                                                                   {"pseudonym": pseudonym})
    assert [r for r in records if r["action"] == "subjects.purge"][-1]["counts"]["status_changes_finished"] == 1


def test_a_person_finishing_their_own_interrupted_unrestriction_is_not_refused(services, monkeypatch):
    """The mark that lets the person lift their restriction goes first; asking again is not refused for want of it."""
    pseudonym = services.vault.pseudonymise("paused@example.org").identity.pseudonym
    services.rights.restrict(pseudonym, actor="subject", reason="account page", by_subject=True)
    fail_once(monkeypatch, services.vault, "set_status")
    with pytest.raises(StoreUnavailable):
        services.rights.unrestrict(pseudonym, actor="subject", reason="account page", by_subject=True)
    assert not services.rights.restricted_by_subject(pseudonym)
    again = services.rights.unrestrict(pseudonym, actor="subject", reason="account page", by_subject=True)
    assert again["status"] == "active"
    services.rights.restrict(pseudonym, actor="ops", reason="dispute")
    with pytest.raises(NotAllowed):  # an operator's restriction stays the operator's to lift
        services.rights.unrestrict(pseudonym, actor="subject", reason="account page", by_subject=True)


@pytest.mark.parametrize("reason", ["asked by alice@example.org", " ", "x" * 501])
def test_a_reason_the_audit_log_must_not_keep_is_refused_before_anything_is_done(services, reason):
    pseudonym = services.vault.pseudonymise("someone@example.org").identity.pseudonym
    for act in (services.rights.restrict, services.rights.close, services.rights.erase):
        with pytest.raises(ValueError, match="reason"):
            act(pseudonym, actor="ops", reason=reason)
    with pytest.raises(ValueError, match="reason"):
        services.rights.show(pseudonym, actor="ops", reason=reason)
    assert services.vault.find(pseudonym).status == "active"
    assert list(AuditLog(services.store).records()) == []
