"""The e-mail change (identity.email_change, identity.web.email_change), through the development IdP.

Two fresh sign-ins upstream in one browser session: the current address, then the new one. The
attacks of the security review are tried and refused: the change opened in another browser, a
leaked identity:self token, the replayed session cookie, forged forms, a stale upstream sign-in.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
from flask import session

from identity import create_app
from identity.audit import AuditLog
from identity.email_change import EMAIL_CHANGES, IN_USE, NOT_POSSIBLE, SAME_ADDRESS, change_reference
from identity.oauth.audiences import parse_encryption_key
from identity.oauth.authorize import ErrorPage
from identity.oauth.records import PENDING_AUTHORIZATIONS
from identity.web.email_change import CHANGE_GONE, FORM_EXPIRED, NOT_COMPLETED, OTHER_BROWSER, SESSION_KEY
from tests.conftest import API, REDIRECT_URI
from tests.lookup_support import present
from tests.oauth_helpers import pkce_pair, query_of
from tests.test_oauth_flow import basic
from tests.test_upstream_flow import session_cookie_payloads
from tests.upstream_fixtures import (  # noqa: F401
    DEV_ISSUER, DEV_ISSUER_HOST, ISSUER_HOST, UPSTREAM, broker_app, broker_browser, broker_client, development,
    tampering, upstream_idp,
)
from tests.person_support import ACCOUNT, CONSENT, account_form, sign_in_to_account, start_app_login
from tests.person_support import press as press_form
from tests.upstream_support import Browser, Page, authorization_url, log_in, parse_form, submit_login

ISSUER = DEV_ISSUER  # the development IdP needs explicit development on a loopback issuer
BROKER_ISSUER = f"https://{ISSUER_HOST}"
SELF = f"{ISSUER}/me"
CHANGE = f"{ISSUER}/me/email/change"
CHANGED = f"{ISSUER}/me/email/changed"
CALLBACK = f"{ISSUER}/login/callback"
BROKER_CHANGE = f"{BROKER_ISSUER}/me/email/change"
BROKER_CHANGED = f"{BROKER_ISSUER}/me/email/changed"
VICTIM = "victim@example.org"
NEW = "victim.new@example.net"
ATTACKER = "attacker@evil.example"


# -- set-up ------------------------------------------------------------------------------------

@pytest.fixture
def service(settings, clock, audience_keys):
    """The service as ``make run`` builds it (development IdP mounted), on a clock the test moves."""
    app = create_app(development(settings), clock=clock)
    app.config["TESTING"] = True
    app.extensions["identity"].oauth.audiences.add(API, key=parse_encryption_key(audience_keys[API].public_pem),
                                                   jwks_uri=None)
    yield app
    app.extensions["identity"].store.close()


@pytest.fixture
def svc(service):
    return service.extensions["identity"]


@pytest.fixture
def account_app(svc):
    client, _ = svc.oauth.clients.register(name="Account app", public=True, redirect_uris=[REDIRECT_URI],
                                           grant_types=None, scopes=["openid", "identity:self"], audiences=[SELF])
    return client


@pytest.fixture
def data_app(svc):
    client, _ = svc.oauth.clients.register(name="Data app", public=True, redirect_uris=[REDIRECT_URI],
                                           grant_types=None, scopes=["openid", "records:read"], audiences=[API])
    return client


@pytest.fixture
def backend(svc):
    return svc.oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                      scopes=["records:read"], audiences=[API])


def new_browser(service) -> Browser:
    return Browser({DEV_ISSUER_HOST: service}, stop_at=REDIRECT_URI)


def post(service, path: str, **kwargs):
    return service.test_client().post(path, base_url=ISSUER, **kwargs)


def sign_in_app(service, browser: Browser, client, email: str, scope: str) -> dict:
    """An app's whole login through the dev IdP, then the code exchange: the app's tokens."""
    verifier, challenge = pkce_pair()
    form = browser.get(authorization_url(ISSUER, client.client_id, REDIRECT_URI, challenge, scope=scope))
    back = submit_login(browser, form, email)
    assert back.url.startswith(REDIRECT_URI) and "code" in back.query, back.text
    tokens = post(service, "/token", data={"grant_type": "authorization_code", "code": back.query["code"],
                                           "redirect_uri": REDIRECT_URI, "client_id": client.client_id,
                                           "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.json
    return tokens.json


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def press(browser: Browser, page: Page, action: str) -> Page:
    """Submit the change page's form with one of its buttons."""
    form = parse_form(page.text)
    assert form.action, page.text
    return browser.post(urljoin(page.url, form.action), {**form.fields, "action": action})


def prove_current(browser: Browser, email: str) -> Page:
    """Step 1: open the change page, sign in upstream with ``email``; the page the browser ends on."""
    idp_form = press(browser, browser.get(CHANGE), "start")
    assert idp_form.url.startswith(f"{ISSUER}/devidp/authorize?"), idp_form.text
    return submit_login(browser, idp_form, email)


def prove_new(browser: Browser, step2: Page, email: str) -> Page:
    idp_form = press(browser, step2, "continue")
    assert idp_form.url.startswith(f"{ISSUER}/devidp/authorize?"), idp_form.text
    return submit_login(browser, idp_form, email)


def assert_step_two(page: Page) -> None:
    assert page.status == 200 and page.url == CHANGE and "Step 2 of 2" in page.text, page.text


def change_email(browser: Browser, current: str, new: str) -> Page:
    step2 = prove_current(browser, current)
    assert_step_two(step2)
    return prove_new(browser, step2, new)


def pseudonym_of(svc, email: str) -> str | None:
    identity = svc.vault.find_by_email(email)
    return None if identity is None else identity.pseudonym


def rectifications(svc) -> list[dict]:
    return [r for r in AuditLog(svc.store).records() if r["action"] == "subjects.rectify"]


# -- the change ----------------------------------------------------------------------------------

def test_two_sign_ins_in_one_browser_move_the_pseudonym_to_the_new_address(service, svc):
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
    browser = new_browser(service)
    start = browser.get(CHANGE)
    assert start.status == 200 and "Step 1 of 2" in start.text and "<script" not in start.text

    done = change_email(browser, VICTIM, NEW)
    assert done.status == 200 and done.url == CHANGED and "was changed" in done.text
    assert pseudonym_of(svc, NEW) == pseudonym and pseudonym_of(svc, VICTIM) is None
    [record] = rectifications(svc)
    assert record["actor"] == "subject" and record["details"] == {"pseudonym": pseudonym}
    # the result is for this browser only
    assert "No e-mail change was completed" in new_browser(service).get(CHANGED).text


def test_every_session_of_the_pseudonym_ends_and_old_refresh_tokens_are_refused(
        service, svc, account_app, data_app, backend):
    victim = new_browser(service)
    account = sign_in_app(service, victim, account_app, VICTIM, "openid identity:self")
    data = sign_in_app(service, victim, data_app, VICTIM, "openid records:read")
    pseudonym = pseudonym_of(svc, VICTIM)
    assert service.test_client().get("/me", base_url=ISSUER, headers=bearer(account)).status_code == 200

    assert change_email(victim, VICTIM, NEW).url == CHANGED

    for app, tokens in ((account_app, account), (data_app, data)):
        refreshed = post(service, "/token", data={"grant_type": "refresh_token", "client_id": app.client_id,
                                                  "refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    rs, secret = backend
    for token in (data["access_token"], data["refresh_token"]):
        assert post(service, "/introspect", data={"token": token},
                    headers=basic(rs.client_id, secret)).json == {"active": False}
    assert service.test_client().get("/me", base_url=ISSUER, headers=bearer(account)).status_code == 401
    [record] = rectifications(svc)
    assert record["counts"] == {"grants_revoked": 2}

    # the new address signs in to the same pseudonym; the old one would start a new, unrelated person
    again = sign_in_app(service, new_browser(service), account_app, NEW, "openid identity:self")
    me = service.test_client().get("/me", base_url=ISSUER, headers=bearer(again))
    assert me.status_code == 200 and me.json["pseudonym"] == pseudonym


def test_an_account_page_session_opened_with_the_old_address_ends(service, svc):
    """Whoever holds the old mailbox (why people change address) keeps no account page of the person."""
    svc.vault.pseudonymise(VICTIM)
    holder_of_old_mailbox = new_browser(service)
    page = sign_in_to_account(holder_of_old_mailbox, VICTIM)
    assert page.url == ACCOUNT and 'id="pseudonym"' in page.text

    assert change_email(new_browser(service), VICTIM, NEW).url == CHANGED

    after = holder_of_old_mailbox.get(ACCOUNT)
    assert after.status == 200 and 'id="pseudonym"' not in after.text and 'id="sign-in"' in after.text
    # a form of the page loaded before the change does nothing either
    refused = account_form(holder_of_old_mailbox, page, "/account/restrict")
    assert 'id="pseudonym"' not in refused.text
    assert svc.vault.find(pseudonym_of(svc, NEW)).is_active


def test_a_consent_page_opened_with_the_old_address_yields_no_code(service, svc):
    partner = svc.oauth.clients.register(
        name="Partner app", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
        scopes=["openid", "records:read"], audiences=[API], third_party=True)[0]
    svc.vault.pseudonymise(VICTIM)
    holder_of_old_mailbox = new_browser(service)
    consent, _verifier = start_app_login(holder_of_old_mailbox, partner, VICTIM, "openid records:read")
    assert consent.url == CONSENT, consent.text

    assert change_email(new_browser(service), VICTIM, NEW).url == CHANGED

    answered = press_form(holder_of_old_mailbox, consent, "allow")
    assert not answered.url.startswith(REDIRECT_URI) or "code" not in answered.query, answered.url
    assert svc.oauth.consents.for_subject(pseudonym_of(svc, NEW)) == []


def test_the_reviewed_takeover_fails_an_identity_self_token_only_yields_a_page_without_secrets(
        service, svc, account_app):
    """The security review's reproduction: the app asks for the change, another browser signs in as the attacker."""
    victim = new_browser(service)
    tokens = sign_in_app(service, victim, account_app, VICTIM, "openid identity:self")
    pseudonym = pseudonym_of(svc, VICTIM)

    started = post(service, "/me/email", headers=bearer(tokens))  # any app with identity:self, or a leaked token
    assert started.status_code == 200 and started.json == {"verification_url": CHANGE}  # no ticket, no query

    attacker = new_browser(service)
    refused = prove_current(attacker, ATTACKER)  # the URL, opened elsewhere, signed in upstream as the attacker
    assert refused.status == 400 and NOT_POSSIBLE in refused.text
    assert pseudonym_of(svc, ATTACKER) is None  # nothing created for the attacker's address either
    # with an account of their own, the attacker changes that one and no other
    own = svc.vault.pseudonymise(ATTACKER).identity.pseudonym
    assert change_email(new_browser(service), ATTACKER, "attacker.two@evil.example").url == CHANGED
    assert pseudonym_of(svc, "attacker.two@evil.example") == own
    # the old ticket URL is gone
    assert service.test_client().get("/me/email/verify?ticket=x", base_url=ISSUER).status_code == 404

    assert pseudonym_of(svc, VICTIM) == pseudonym
    refreshed = post(service, "/token", data={"grant_type": "refresh_token", "client_id": account_app.client_id,
                                              "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200  # the victim's session was never touched
    assert [r["details"] for r in rectifications(svc)] == [{"pseudonym": own}]


def test_a_change_started_in_one_browser_cannot_be_continued_or_completed_in_another(service, svc):
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
    victim = new_browser(service)
    step2 = prove_current(victim, VICTIM)
    assert_step_two(step2)

    attacker = new_browser(service)
    own_page = attacker.get(CHANGE)
    assert "Step 1 of 2" in own_page.text  # nothing of the victim's change shows in another session
    nothing = press(attacker, own_page, "continue")  # its own session holds no change
    assert nothing.status == 400 and CHANGE_GONE in nothing.text
    stolen_form = attacker.post(CHANGE, {**parse_form(step2.text).fields, "action": "continue"})
    assert stolen_form.status == 400 and FORM_EXPIRED in stolen_form.text  # the victim's form, another session

    # the victim's step-2 sign-in URL at the IdP, opened in the attacker's browser and signed in as the attacker
    idp_form = press(victim, step2, "continue")
    hijack = submit_login(attacker, attacker.get(idp_form.url), ATTACKER)
    assert hijack.status == 400 and hijack.url.startswith(CALLBACK)
    assert pseudonym_of(svc, VICTIM) == pseudonym and pseudonym_of(svc, ATTACKER) is None
    # the attempt spent nothing of the victim's: their own sign-in still completes
    assert submit_login(victim, idp_form, NEW).url == CHANGED
    assert pseudonym_of(svc, NEW) == pseudonym


def test_a_sign_in_completes_only_in_the_session_that_holds_the_change(service, svc):
    """Even with the upstream state's binding bypassed: the completion itself checks the session."""
    svc.vault.pseudonymise(VICTIM)
    change_id = svc.email_changes.start()
    for held in (None, svc.email_changes.start()):  # no change in this session, or another one
        pending = svc.email_changes.next_step(change_id, return_to=CHANGE)
        with service.test_request_context(base_url=ISSUER):
            if held is not None:
                session[SESSION_KEY] = held
            with pytest.raises(ErrorPage, match=re.escape(OTHER_BROWSER)):
                svc.signins.complete(pending.pending_id, VICTIM)
    assert svc.store.get(EMAIL_CHANGES, change_reference(change_id))["stage"] == "started"


def test_the_session_cookie_replayed_after_completion_does_nothing(service, svc):
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
    victim = new_browser(service)
    step2 = prove_current(victim, VICTIM)
    cookie = victim.client.get_cookie("identity_session", domain=DEV_ISSUER_HOST.partition(":")[0])
    snapshot = present(cookie).value  # step 1 done
    step2_idp_form = press(victim, step2, "continue")
    victim.stop_at = CALLBACK
    callback = submit_login(victim, step2_idp_form, NEW).url
    victim.stop_at = REDIRECT_URI
    assert victim.get(callback).url == CHANGED

    replay = new_browser(service)
    replay.client.set_cookie("identity_session", snapshot, domain=DEV_ISSUER_HOST.partition(":")[0])
    assert "Step 1 of 2" in replay.get(CHANGE).text
    again = press(replay, step2, "continue")  # the snapshot's own CSRF token: accepted, but the change is spent
    assert again.status == 400 and CHANGE_GONE in again.text
    assert victim.get(callback).status == 400  # the step-2 callback replayed
    assert press(victim, step2, "continue").status == 400  # and the victim's own browser, once more
    assert pseudonym_of(svc, NEW) == pseudonym and len(rectifications(svc)) == 1


def test_step_two_must_come_within_the_window_after_step_one(service, svc, clock, settings):
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
    browser = new_browser(service)
    step2 = prove_current(browser, VICTIM)
    clock.advance(settings.pending_login_ttl + 1)
    late = press(browser, step2, "continue")
    assert late.status == 400 and CHANGE_GONE in late.text

    step2 = prove_current(browser, VICTIM)  # again; step 2 starts in time but its sign-in ends too late
    clock.advance(settings.pending_login_ttl - 10)
    idp_form = press(browser, step2, "continue")
    clock.advance(20)  # the parked sign-in is still live, the change is not
    refused = submit_login(browser, idp_form, NEW)
    assert refused.status == 400 and "expired" in refused.text
    assert pseudonym_of(svc, VICTIM) == pseudonym and pseudonym_of(svc, NEW) is None and not rectifications(svc)


@pytest.mark.parametrize("status", ["unknown", "erased", "restricted"])
def test_an_address_without_an_active_account_gets_one_page_that_reveals_nothing(service, svc, status):
    if status != "unknown":
        pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
        act = svc.rights.erase if status == "erased" else svc.rights.restrict
        act(pseudonym, actor="ops", reason="test")
    page = prove_current(new_browser(service), VICTIM)
    assert page.status == 400 and NOT_POSSIBLE in page.text and page.url.startswith(CALLBACK)
    assert svc.store.count(EMAIL_CHANGES, {}) == 0
    found = svc.vault.find_by_email(VICTIM)
    assert (found is None) if status != "restricted" else (found.status == "restricted")


def test_the_new_address_must_be_neither_another_accounts_nor_the_current_one(service, svc):
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
    other = svc.vault.pseudonymise("other@example.org").identity.pseudonym
    taken = change_email(new_browser(service), VICTIM, "Other@Example.org")
    assert taken.status == 400 and IN_USE in taken.text
    same = change_email(new_browser(service), VICTIM, " VICTIM@example.org")
    assert same.status == 400 and SAME_ADDRESS in same.text
    assert pseudonym_of(svc, VICTIM) == pseudonym and pseudonym_of(svc, "other@example.org") == other
    assert not rectifications(svc) and svc.store.count(EMAIL_CHANGES, {}) == 0


def test_the_forms_need_this_sessions_csrf_token(service, svc):
    browser = new_browser(service)
    fields = parse_form(browser.get(CHANGE).text).fields
    forged = new_browser(service).post(CHANGE, {**fields, "action": "start"})  # another site's form: no cookie
    assert forged.status == 400 and FORM_EXPIRED in forged.text
    for data in ({"action": "start"}, {"csrf_token": "x" * 43, "action": "start"}):
        assert browser.post(CHANGE, data).status == 400
    assert browser.post(CHANGE, {**fields, "action": "something"}).status == 400
    assert svc.store.count(EMAIL_CHANGES, {}) == 0 and svc.store.count(PENDING_AUTHORIZATIONS, {}) == 0


def test_cancelling_here_or_at_the_identity_provider_changes_nothing(service, svc):
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
    browser = new_browser(service)
    idp_form = press(browser, browser.get(CHANGE), "start")
    back = submit_login(browser, idp_form, "", action="cancel")
    assert back.url.startswith(CHANGE + "?") and back.query["error"] == "access_denied"
    assert NOT_COMPLETED in back.text and "Step 1 of 2" in back.text

    step2 = prove_current(browser, VICTIM)
    cancelled = press(browser, step2, "cancel")
    assert cancelled.status == 200 and "cancelled" in cancelled.text and "Step 1 of 2" in cancelled.text
    assert svc.store.count(EMAIL_CHANGES, {}) == 0
    assert press(browser, step2, "continue").status == 400
    assert pseudonym_of(svc, VICTIM) == pseudonym and not rectifications(svc)


def test_nothing_of_the_change_is_in_a_log_line_a_url_or_the_store_in_clear(service, svc, caplog, settings):
    caplog.set_level(logging.DEBUG)
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym
    browser = new_browser(service)
    pending_ids = set()
    idp_form = press(browser, browser.get(CHANGE), "start")
    pending_ids |= {d["pending_id"] for d in svc.store.find(PENDING_AUTHORIZATIONS, {})}
    step2 = submit_login(browser, idp_form, VICTIM)
    idp_form = press(browser, step2, "continue")
    pending_ids |= {d["pending_id"] for d in svc.store.find(PENDING_AUTHORIZATIONS, {})}
    assert submit_login(browser, idp_form, NEW).url == CHANGED
    sessions = [json.loads(p) for p in session_cookie_payloads(browser.set_cookies)]
    change_ids = {s[SESSION_KEY] for s in sessions if SESSION_KEY in s}
    assert len(change_ids) == 1 and len(pending_ids) == 2

    secrets = change_ids | {change_reference(c) for c in change_ids} | pending_ids
    texts = [r.getMessage() for r in caplog.records] + [repr(vars(r)) for r in caplog.records]
    texts += browser.hops + [json.dumps(r) for r in AuditLog(svc.store).records()]
    for text in texts:
        assert not any(s in text for s in secrets), text
        assert VICTIM not in text.lower() and NEW not in text.lower(), text
    assert any(r.getMessage() == "e-mail change completed" for r in caplog.records)
    logged = [r.getMessage() for r in caplog.records] + [repr(vars(r)) for r in caplog.records]
    assert not any(pseudonym in text for text in logged)  # a pseudonym is personal data: never in a log line

    database = Path(settings.db_uri.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert not any(c.encode() in stored for c in change_ids)  # only its hash is kept
    assert VICTIM.encode() not in stored and NEW.encode() not in stored


# -- the upstream leg (a separate IdP, as Auth0 in production) -----------------------------------

def upstream_requests(browser: Browser) -> list[dict[str, str]]:
    return [query_of(h) for h in browser.hops if h.startswith(f"{UPSTREAM}/authorize?")]


def test_the_identity_provider_is_asked_for_a_fresh_sign_in_and_the_page_may_send_the_form_there(
        broker_app, broker_browser, broker_client):
    log_in(broker_browser, BROKER_ISSUER, broker_client.client_id, REDIRECT_URI, VICTIM)
    [app_login] = upstream_requests(broker_browser)
    assert "prompt" not in app_login and "max_age" not in app_login  # an app's login keeps single sign-on

    page = broker_browser.get(BROKER_CHANGE)
    assert "form-action 'self' https://upstream.example.test;" in page.response.headers["Content-Security-Policy"]
    press(broker_browser, page, "start")
    change_login = upstream_requests(broker_browser)[-1]
    assert change_login["prompt"] == "login" and change_login["max_age"] == "0"
    other_page = broker_browser.get(BROKER_CHANGED)  # any other page keeps form-action 'self' alone
    assert "form-action 'self';" in other_page.response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("auth_time", ["an hour ago", "missing"])
def test_a_stale_upstream_sign_in_does_not_count(broker_app, broker_browser, tampering, auth_time):
    svc = broker_app.extensions["identity"]
    pseudonym = svc.vault.pseudonymise(VICTIM).identity.pseudonym

    def stale(header, claims):
        claims = {k: v for k, v in claims.items() if k != "auth_time"}
        if auth_time == "an hour ago":
            claims["auth_time"] = claims["iat"] - 3600
        return tampering.sign(header, claims)

    tampering.tamper = stale
    idp_form = press(broker_browser, broker_browser.get(BROKER_CHANGE), "start")
    back = submit_login(broker_browser, idp_form, VICTIM)
    assert back.url.startswith(BROKER_CHANGE + "?") and back.query["error"] == "access_denied"
    assert NOT_COMPLETED in back.text and "Step 1 of 2" in back.text
    assert [d["stage"] for d in svc.store.find(EMAIL_CHANGES, {})] == ["started"]
    assert pseudonym_of(svc, VICTIM) == pseudonym


# -- the service alone, over both store backends --------------------------------------------------

def test_each_step_happens_once_over_either_store(store, settings, clock):
    from identity.email_change import DONE, ChangeRefused
    from identity.services import build_services

    services = build_services(settings, store=store, clock=clock)
    for purpose in ("rectify-current", "rectify-new"):
        services.signins.register_completion(purpose, lambda parked, email: BROKER_CHANGE)
    changes = services.email_changes
    pseudonym = services.vault.pseudonymise(VICTIM).identity.pseudonym
    change_id = changes.start()
    reference = change_reference(change_id)
    assert store.get(EMAIL_CHANGES, reference)["stage"] == "started" and store.get(EMAIL_CHANGES, change_id) is None

    assert present(changes.next_step(change_id, return_to=BROKER_CHANGE)).purpose == "rectify-current"
    with pytest.raises(ChangeRefused):
        changes.new_address_proven(reference, NEW)  # step 2 before step 1
    assert changes.current_address_proven(reference, VICTIM) == pseudonym
    with pytest.raises(ChangeRefused):
        changes.current_address_proven(reference, VICTIM)  # step 1 again
    parked = present(changes.next_step(change_id, return_to=BROKER_CHANGE))
    assert parked.purpose == "rectify-new" and parked.reauthenticate
    assert changes.new_address_proven(reference, NEW).pseudonym == pseudonym
    with pytest.raises(ChangeRefused):
        changes.new_address_proven(reference, "third@example.org")  # step 2 again
    assert present(changes.find(change_id)).stage == DONE and changes.next_step(change_id, return_to=BROKER_CHANGE) is None
    assert pseudonym_of(services, NEW) == pseudonym and pseudonym_of(services, "third@example.org") is None
    clock.advance(settings.pending_login_ttl + 1)
    assert changes.find(change_id) is None
    assert services.rights.purge(inactive_for=10**8, actor="cron", dry_run=False).expired["email_changes"] == 1
