"""The account page (identity.web.account, identity.account_sessions), without a browser.

Behind the brokered login, with its own server-side session. The attacks are tried: no session, a
missing, replayed or foreign form token, a stale sign-in deleting the account, a session id from
before the last sign-in, an idle or too old session, a sign-in finished in another browser session.
"""

from __future__ import annotations

import json

import pytest

from identity.account_sessions import ACCOUNT_SESSIONS, IDLE_SECONDS, MAX_SECONDS, AccountSessions
from identity.audit import AuditLog
from identity.oauth.authorize import ErrorPage
from identity.oauth.consent import CONSENTS
from identity.oauth.records import token_hash
from identity.web.account import ACCOUNT_SIGNIN, CONFIRM, COOKIE, FORM_EXPIRED, NO_ACCOUNT, NOT_RECENT, SECURE_COOKIE
from tests.conftest import REDIRECT_URI, FakeClock
from tests.lookup_support import present
from tests.person_support import (  # noqa: F401
    ACCOUNT, ISSUER, OTHER, PERSON, account_form, exchange, first_party, new_browser, parse_forms, press, refresh,
    service, sign_in_to_account, start_app_login, svc, third_party,
)
from tests.upstream_fixtures import (  # noqa: F401
    ISSUER_HOST, broker_app, broker_browser, tampering, upstream_idp,
)
from tests.upstream_support import submit_login


def cookie_headers(browser, name: str = COOKIE) -> list[str]:
    return [c for c in browser.set_cookies if c.startswith(name + "=")]


def signed_in_page(service, email: str = PERSON):
    browser = new_browser(service)
    page = sign_in_to_account(browser, email)
    assert page.url == ACCOUNT and page.status == 200 and 'id="pseudonym"' in page.text, page.text
    return browser, page


def audit_actions(svc, action: str) -> list[dict]:
    return [r for r in AuditLog(svc.store).records() if r["action"] == action]


# -- without a session ---------------------------------------------------------------------------

def test_without_a_session_the_page_offers_only_a_sign_in(service, svc):
    browser = new_browser(service)
    browser.get(f"{ISSUER}/authorize")  # nothing else in this browser
    page = browser.get(ACCOUNT)
    assert page.status == 200 and 'id="sign-in"' in page.text and 'id="pseudonym"' not in page.text
    assert page.response.headers["Cache-Control"] == "no-store"
    for path in ("/account/export", "/account/apps/remove", "/account/restrict", "/account/delete"):
        refused = browser.post(ISSUER + path, {"csrf_token": "x", "confirm": "yes", "client_id": "x"})
        assert refused.status == 401 and 'id="sign-in"' in refused.text, path


def test_signing_in_needs_an_account_for_the_address_and_creates_none(service, svc):
    browser = new_browser(service)
    page = sign_in_to_account(browser, "nobody@example.org")
    assert page.status == 400 and NO_ACCOUNT in page.text
    assert svc.vault.find_by_email("nobody@example.org") is None and not cookie_headers(browser)


def test_a_sign_in_completes_only_in_the_browser_session_that_started_it(service, svc):
    handler = svc.signins._completions[ACCOUNT_SIGNIN]
    with service.test_request_context("/login/callback", base_url=ISSUER):
        with pytest.raises(ErrorPage):
            handler({"reference": token_hash("someone else's sign-in")}, PERSON)


# -- the session ---------------------------------------------------------------------------------

def test_the_session_cookie_is_httponly_lax_and_rotated_at_every_sign_in(service, svc, clock, first_party):
    start_app_login(new_browser(service), first_party, PERSON)  # the person has an account
    browser, page = signed_in_page(service)
    first = cookie_headers(browser)[-1]
    assert "HttpOnly" in first and "SameSite=Lax" in first and "Path=/" in first
    assert "Secure" not in first  # development on http://127.0.0.1 only
    old_id = first.split(";", 1)[0].split("=", 1)[1]
    clock.advance(301)
    idp_form = account_form(browser, browser.get(ACCOUNT), "/account/signin")
    assert 'id="pseudonym"' in submit_login(browser, idp_form, PERSON).text
    new_id = cookie_headers(browser)[-1].split(";", 1)[0].split("=", 1)[1]
    assert new_id != old_id
    assert svc.account_sessions.find(old_id) is None and svc.account_sessions.find(new_id) is not None
    assert svc.store.count(ACCOUNT_SESSIONS, {}) == 1
    for header in browser.set_cookies:
        assert PERSON not in header


def test_under_https_the_cookie_is_secure_with_the_host_prefix(broker_app, broker_browser):
    svc = broker_app.extensions["identity"]
    svc.vault.pseudonymise(PERSON)
    start = broker_browser.get(f"https://{ISSUER_HOST}/account")
    idp_form = press(broker_browser, start)
    page = submit_login(broker_browser, idp_form, PERSON)
    assert page.status == 200 and 'id="pseudonym"' in page.text, page.text
    header = cookie_headers(broker_browser, SECURE_COOKIE)[-1]
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Domain" not in header


def test_the_session_ends_after_idle_minutes_and_after_the_longest_lifetime(service, svc, clock, first_party):
    start_app_login(new_browser(service), first_party, PERSON)
    browser, _ = signed_in_page(service)
    clock.advance(IDLE_SECONDS - 60)
    assert 'id="pseudonym"' in browser.get(ACCOUNT).text  # activity restarts the idle time
    clock.advance(IDLE_SECONDS - 60)
    assert 'id="pseudonym"' in browser.get(ACCOUNT).text
    clock.advance(IDLE_SECONDS + 1)
    assert 'id="sign-in"' in browser.get(ACCOUNT).text

    browser, _ = signed_in_page(service)
    for _ in range(MAX_SECONDS // (IDLE_SECONDS - 60) + 1):
        clock.advance(IDLE_SECONDS - 60)
        browser.get(ACCOUNT)
    assert 'id="sign-in"' in browser.get(ACCOUNT).text


def test_the_page_shows_no_e_mail_address(service, svc, third_party):
    browser = new_browser(service)
    press(browser, start_app_login(browser, third_party, PERSON)[0], "allow")
    _, page = signed_in_page(service)
    assert PERSON not in page.text and "person@" not in page.text and "@" not in page.text
    assert svc.vault.find_by_email(PERSON).pseudonym in page.text


def test_signing_in_logs_neither_the_address_nor_the_pseudonym(service, svc, first_party, caplog):
    start_app_login(new_browser(service), first_party, PERSON)
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    with caplog.at_level("DEBUG"):
        signed_in_page(service)
    assert any(r.getMessage() == "account sign-in" for r in caplog.records)
    for record in caplog.records:
        line = json.dumps(record.__dict__, default=str)
        assert pseudonym not in line and PERSON not in line, line


def test_closing_the_account_ends_its_account_page_sessions(service, svc, first_party):
    start_app_login(new_browser(service), first_party, PERSON)
    browser, page = signed_in_page(service)
    svc.rights.close(svc.vault.find_by_email(PERSON).pseudonym, actor="ops", reason="customer cancelled")
    after = browser.get(ACCOUNT)
    assert 'id="pseudonym"' not in after.text and 'id="sign-in"' in after.text
    assert 'id="pseudonym"' not in account_form(browser, page, "/account/restrict").text


# -- apps: remove access -------------------------------------------------------------------------

def test_the_page_lists_the_apps_and_remove_access_refuses_their_refresh_tokens(
        service, svc, third_party, first_party):
    app_browser = new_browser(service)
    consent, verifier = start_app_login(app_browser, third_party, PERSON, "openid records:read")
    partner = exchange(service, third_party, press(app_browser, consent, "allow").query["code"], verifier)
    back, own_verifier = start_app_login(app_browser, first_party, PERSON)
    own = exchange(service, first_party, back.query["code"], own_verifier)

    browser, page = signed_in_page(service)
    assert f'id="app-{third_party.client_id}"' in page.text and f'id="app-{first_party.client_id}"' in page.text
    removed = account_form(browser, page, "/account/apps/remove", client_id=third_party.client_id)
    assert removed.url == ACCOUNT + "?done=removed" and "access was removed" in removed.text
    assert f'id="app-{third_party.client_id}"' not in removed.text

    assert refresh(service, third_party, partner["refresh_token"]).json["error"] == "invalid_grant"
    assert refresh(service, first_party, own["refresh_token"]).status_code == 200  # the other app keeps access
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    assert svc.oauth.consents.get(pseudonym, third_party.client_id) is None
    assert start_app_login(app_browser, third_party, PERSON)[0].url == f"{ISSUER}/consent"  # asked again
    [record] = audit_actions(svc, "subjects.remove_access")
    assert record["actor"] == "subject" and record["details"]["client_id"] == third_party.client_id


def test_removing_an_app_without_access_changes_nothing(service, svc, first_party):
    start_app_login(new_browser(service), first_party, PERSON)
    browser, page = signed_in_page(service)
    token = next(f["csrf_token"] for a, f in parse_forms(page.text) if a == "/account/restrict")
    refused = browser.post(f"{ISSUER}/account/apps/remove", {"csrf_token": token, "client_id": "no-such-app"})
    assert refused.status == 400 and "no access to remove" in refused.text
    assert audit_actions(svc, "subjects.remove_access") == []


# -- the forms' one-time tokens ------------------------------------------------------------------

def test_a_form_without_its_token_or_replayed_is_refused(service, svc, first_party):
    start_app_login(new_browser(service), first_party, PERSON)
    browser, page = signed_in_page(service)
    missing = browser.post(f"{ISSUER}/account/restrict", {})
    assert missing.status == 400 and FORM_EXPIRED in missing.text
    done = account_form(browser, page, "/account/restrict")
    assert done.url == ACCOUNT + "?done=restricted"
    replay = account_form(browser, done, "/account/unrestrict")
    assert replay.url == ACCOUNT + "?done=unrestricted"
    again = account_form(browser, page, "/account/restrict")  # the first page's form, sent again
    assert again.status == 400 and FORM_EXPIRED in again.text
    assert svc.vault.find_by_email(PERSON).status == "active"
    assert len(audit_actions(svc, "subjects.restrict")) == 1


def test_a_token_of_another_persons_session_is_refused(service, svc, first_party):
    for email in (PERSON, OTHER):
        start_app_login(new_browser(service), first_party, email)
    victim, _ = signed_in_page(service, PERSON)
    _, attacker_page = signed_in_page(service, OTHER)
    action, fields = parse_forms(attacker_page.text)[[a for a, _ in parse_forms(attacker_page.text)].index(
        "/account/restrict")]
    refused = victim.post(ISSUER + action, fields)
    assert refused.status == 400 and FORM_EXPIRED in refused.text
    assert svc.vault.find_by_email(PERSON).status == "active" and svc.vault.find_by_email(OTHER).status == "active"


def test_two_replays_at_once_spend_the_token_once_over_either_store(store):
    sessions = AccountSessions(store, csrf_key=b"k" * 32, clock=FakeClock())
    session_id = sessions.start("p" * 26)
    current = present(sessions.find(session_id))
    token = sessions.csrf_token(current)
    assert sessions.spend_csrf(current, token) and not sessions.spend_csrf(current, token)
    fresh = present(sessions.find(session_id))
    assert sessions.csrf_token(fresh) != token and sessions.spend_csrf(fresh, sessions.csrf_token(fresh))
    assert not sessions.spend_csrf(fresh, None) and sessions.find("x" * 200) is None
    sessions.end_all_for("p" * 26)
    assert sessions.find(session_id) is None


# -- data, restriction ---------------------------------------------------------------------------

def test_download_my_data_is_the_rights_export_as_a_json_file(service, svc, third_party):
    app_browser = new_browser(service)
    press(app_browser, start_app_login(app_browser, third_party, PERSON)[0], "allow")
    browser, page = signed_in_page(service)
    download = account_form(browser, page, "/account/export")
    assert download.status == 200 and download.response.mimetype == "application/json"
    assert download.response.headers["Content-Disposition"] == 'attachment; filename="identity-export.json"'
    body = json.loads(download.text)
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    assert body["format"] == "identity-service-export/1" and body["identity"]["pseudonym"] == pseudonym
    assert [c["client_id"] for c in body["consents"]] == [third_party.client_id]
    assert PERSON not in download.text
    assert account_form(browser, page, "/account/export").status == 200  # changes nothing: may be pressed again


def test_restricting_stops_the_apps_and_the_person_can_undo_it(service, svc, first_party):
    app_browser = new_browser(service)
    back, verifier = start_app_login(app_browser, first_party, PERSON)
    tokens = exchange(service, first_party, back.query["code"], verifier)
    browser, page = signed_in_page(service)
    restricted = account_form(browser, page, "/account/restrict")
    assert svc.vault.find_by_email(PERSON).status == "restricted" and 'id="unrestrict"' in restricted.text
    assert refresh(service, first_party, tokens["refresh_token"]).json["error"] == "invalid_grant"
    assert start_app_login(app_browser, first_party, PERSON)[0].query["error"] == "access_denied"
    lifted = account_form(browser, restricted, "/account/unrestrict")
    assert lifted.url == ACCOUNT + "?done=unrestricted" and svc.vault.find_by_email(PERSON).status == "active"
    assert refresh(service, first_party, tokens["refresh_token"]).status_code == 200


def test_a_restriction_placed_by_an_operator_cannot_be_lifted_here(service, svc, first_party):
    start_app_login(new_browser(service), first_party, PERSON)
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    svc.rights.restrict(pseudonym, actor="operator", reason="ticket 1")
    browser, page = signed_in_page(service)
    assert 'id="unrestrict"' not in page.text and "restricted by the service's operators" in page.text.replace(
        "&#39;", "'")
    forged = browser.post(f"{ISSUER}/account/unrestrict",
                          {"csrf_token": parse_forms(page.text)[1][1]["csrf_token"]})
    assert forged.status == 409 and svc.vault.find(pseudonym).status == "restricted"


# -- delete my account ---------------------------------------------------------------------------

def test_delete_needs_the_confirmation_and_a_recent_sign_in(service, svc, clock, first_party):
    start_app_login(new_browser(service), first_party, PERSON)
    browser, page = signed_in_page(service)
    unconfirmed = account_form(browser, page, "/account/delete")
    assert unconfirmed.status == 400 and CONFIRM in unconfirmed.text
    clock.advance(301)
    stale = browser.get(ACCOUNT)
    assert 'id="delete"' not in stale.text and 'id="sign-in-again"' in stale.text
    forged = browser.post(f"{ISSUER}/account/delete", {"confirm": "yes", "csrf_token": next(
        f["csrf_token"] for a, f in parse_forms(stale.text) if a == "/account/restrict")})
    assert forged.status == 403 and NOT_RECENT in forged.text
    assert svc.vault.find_by_email(PERSON) is not None


def test_delete_erases_as_the_operator_command_does_and_signs_the_person_out(service, svc, third_party):
    app_browser = new_browser(service)
    consent, verifier = start_app_login(app_browser, third_party, PERSON)
    tokens = exchange(service, third_party, press(app_browser, consent, "allow").query["code"], verifier)
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    browser, page = signed_in_page(service)
    gone = account_form(browser, page, "/account/delete", confirm="yes")
    assert gone.url == f"{ISSUER}/account/deleted" and "Your account was deleted" in gone.text

    assert svc.vault.find_by_email(PERSON) is None and svc.vault.find(pseudonym).status == "erased"
    assert refresh(service, third_party, tokens["refresh_token"]).json["error"] == "invalid_grant"
    assert svc.store.count(ACCOUNT_SESSIONS, {"subject": pseudonym}) == 0
    assert svc.store.count(CONSENTS, {"subject": pseudonym}) == 0
    assert any(c.startswith(COOKIE + "=;") for c in browser.set_cookies)
    assert 'id="sign-in"' in browser.get(ACCOUNT).text
    [record] = audit_actions(svc, "subjects.erase")
    assert record["actor"] == "subject" and record["details"] == {"pseudonym": pseudonym}
    assert browser.get(f"{ISSUER}/account/deleted").url == ACCOUNT  # the notice shows once


def test_the_account_page_speaks_dutch_when_asked(service, first_party):
    start_app_login(new_browser(service), first_party, PERSON)
    browser = new_browser(service, accept_language="nl")
    start = browser.get(ACCOUNT)
    assert '<html lang="nl">' in start.text and ">Inloggen</button>" in start.text
    page = submit_login(browser, press(browser, start), PERSON)
    assert "Apps met toegang" in page.text and "Mijn account verwijderen" in page.text
    assert REDIRECT_URI not in page.text
