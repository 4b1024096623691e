"""Consent for third-party apps (identity.oauth.consent, identity.web.consent), without a browser.

A first-party app gets its code after the sign-in; a third-party app only after the person allowed
it, once per person, app, audience and scopes, and again when it asks for more (a scope allowed for one
audience is asked again for another). Deny answers ``access_denied``
with ``state`` and ``iss``. The forms' attacks are tried: a missing or replayed CSRF token, a form
posted in another person's session, a page replaced by a newer request.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from identity.oauth.authorize import Authorizer
from identity.oauth.consent import CONSENTS, PENDING_CONSENTS, Consents, consent_key
from identity.oauth.records import AUTHORIZATION_CODES
from identity.web.consent import FORM_EXPIRED, GONE, REPLACED
from identity.oauth.audiences import parse_encryption_key
from tests.conftest import API, OTHER_API, REDIRECT_URI, FakeClock
from tests.lookup_support import present
from tests.oauth_helpers import pkce_pair
from tests.person_support import (  # noqa: F401
    CONSENT, ISSUER, OTHER, PERSON, exchange, first_party, new_browser, parse_forms, press, service,
    start_app_login, svc, third_party,
)
from tests.upstream_support import authorization_url, decode_segment, submit_login


def allow(browser, page):
    assert page.url == CONSENT and page.status == 200, page.text
    return press(browser, page, "allow")


# -- who is asked --------------------------------------------------------------------------------

def test_a_first_party_app_gets_its_code_without_a_consent_page(service, first_party):
    browser = new_browser(service)
    back, _ = start_app_login(browser, first_party, PERSON)
    assert back.url.startswith(REDIRECT_URI + "?") and "code" in back.query
    assert CONSENT not in browser.hops


def test_a_third_party_app_shows_its_name_the_scopes_in_plain_words_and_the_services(service, third_party):
    browser = new_browser(service)
    page, _ = start_app_login(browser, third_party, PERSON, "openid records:read")
    assert page.url == CONSENT and page.status == 200
    text = page.text
    assert "<h1>Partner app asks for access to your account</h1>" in text
    assert "Know that it is you, by your pseudonym (never your e-mail address)" in text
    assert "records:read" in text and "Stay signed in without asking you again" in text
    assert f"<li>{API}</li>" in text
    assert PERSON not in text and "code=" not in text
    assert page.response.headers["Cache-Control"] == "no-store"
    csp = page.response.headers["Content-Security-Policy"]
    assert "form-action 'self' https://app.example.org" in csp and "unsafe-inline" not in csp
    assert "<script" not in text
    assert re.search(r'<button type="submit" id="allow"[^>]*>Allow</button>', text)


def test_deny_sends_access_denied_with_state_and_iss_to_the_registered_redirect_uri(service, svc, third_party):
    browser = new_browser(service)
    page, _ = start_app_login(browser, third_party, PERSON)
    back = press(browser, page, "deny")
    assert back.url.startswith(REDIRECT_URI + "?")
    assert back.query["error"] == "access_denied" and back.query["state"] == "app-state"
    assert back.query["iss"] == ISSUER and "code" not in back.query
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    assert svc.oauth.consents.get(pseudonym, third_party.client_id) is None
    again, _ = start_app_login(browser, third_party, PERSON)
    assert again.url == CONSENT  # a denial is not remembered as anything


def test_allow_gives_a_code_and_is_remembered_until_the_app_asks_for_more(service, svc, third_party):
    browser = new_browser(service)
    page, verifier = start_app_login(browser, third_party, PERSON, "openid records:read")
    back = allow(browser, page)
    assert back.url.startswith(REDIRECT_URI + "?") and back.query["state"] == "app-state"
    assert back.query["iss"] == ISSUER
    tokens = exchange(service, third_party, back.query["code"], verifier)
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    assert decode_segment(tokens["id_token"])["sub"] == svc.oauth.subjects.subject_for(pseudonym, client=third_party)
    assert tokens["refresh_token"]

    same, _ = start_app_login(browser, third_party, PERSON, "openid")  # fewer scopes: covered
    assert same.url.startswith(REDIRECT_URI + "?") and "code" in same.query
    more, _ = start_app_login(browser, third_party, PERSON, "openid records:write")
    assert more.url == CONSENT and "records:write" in more.text
    allow(browser, more)
    consent = svc.oauth.consents.get(pseudonym, third_party.client_id)
    assert set(consent.scopes) == {"openid", "records:read", "records:write"} and consent.audiences == (API,)


def test_a_scope_allowed_for_one_service_is_asked_again_for_another(service, svc, audience_keys):
    """The review's attack: write access allowed for one service, then a harmless scope for a second one,
    must not add up to write access for the second one without the person seeing that pair."""
    svc.oauth.audiences.add(OTHER_API, key=parse_encryption_key(audience_keys[OTHER_API].public_pem), jwks_uri=None)
    partner, _ = svc.oauth.clients.register(
        name="Partner app", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
        scopes=["openid", "records:read", "records:write"], audiences=[API, OTHER_API], third_party=True)
    browser = new_browser(service)

    def log_in(scope: str, resource: str):
        _, challenge = pkce_pair()
        form = browser.get(authorization_url(ISSUER, partner.client_id, REDIRECT_URI, challenge, scope=scope,
                                             resource=resource))
        return submit_login(browser, form, PERSON)

    assert "code" in allow(browser, log_in("openid records:write", API)).query
    assert "code" in allow(browser, log_in("openid", OTHER_API)).query
    asked = log_in("openid records:write", OTHER_API)
    assert asked.url == CONSENT and "records:write" in asked.text and OTHER_API in asked.text
    assert log_in("openid records:write", API).url.startswith(REDIRECT_URI)  # what was allowed stays allowed


def test_consent_belongs_to_the_person_not_to_the_browser_or_the_app(service, svc, third_party, first_party):
    browser = new_browser(service)
    allow(browser, start_app_login(browser, third_party, PERSON)[0])
    other, _ = start_app_login(new_browser(service), third_party, OTHER)
    assert other.url == CONSENT  # another person is asked for themselves
    assert len(list(svc.store.find(CONSENTS, {}))) == 1


def test_the_code_carries_the_time_of_the_sign_in_not_of_the_answer(service, svc, third_party, clock):
    browser = new_browser(service)
    before = int(time.time())
    page, verifier = start_app_login(browser, third_party, PERSON)
    after = int(time.time())
    clock.advance(40)
    back = allow(browser, page)
    tokens = exchange(service, third_party, back.query["code"], verifier)
    # the development IdP's auth_time (it runs on the real clock; the service's is this test's, 40 s on)
    assert before <= decode_segment(tokens["id_token"])["auth_time"] <= after


@pytest.mark.parametrize("by_subject", [False, True])
def test_a_consent_page_answered_after_a_restriction_issues_nothing(service, svc, third_party, by_subject):
    """Art. 18: a person restricted (by an operator, or on their account page in another tab) after the page
    was shown gets no code and records no consent; the app gets access_denied, as /authorize answers.
    (Closing and erasure drop the waiting request itself: the page then finds nothing to answer.)"""
    browser = new_browser(service)
    page, _ = start_app_login(browser, third_party, PERSON)
    assert page.url == CONSENT
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    svc.rights.restrict(pseudonym, actor="subject" if by_subject else "ops", by_subject=by_subject,
                        reason="Art. 18(1)(a): accuracy contested")
    back = press(browser, page, "allow")
    assert back.url.startswith(REDIRECT_URI + "?"), back.url
    assert back.query["error"] == "access_denied" and back.query["state"] == "app-state" and "code" not in back.query
    assert svc.store.count(CONSENTS, {"subject": pseudonym}) == 0
    assert svc.store.count(AUTHORIZATION_CODES, {}) == 0


# -- the form's attacks --------------------------------------------------------------------------

def test_a_form_without_the_csrf_token_allows_nothing(service, svc, third_party):
    browser = new_browser(service)
    page, _ = start_app_login(browser, third_party, PERSON)
    action, hidden = parse_forms(page.text)[0]
    refused = browser.post(CONSENT, {"request": hidden["request"], "action": "allow"})
    assert refused.status == 400 and FORM_EXPIRED in refused.text and "code=" not in refused.url
    assert svc.store.count(CONSENTS, {}) == 0
    assert allow(browser, page).query.get("code")  # the person's own answer still counts


def test_a_replayed_form_finds_nothing_left_to_answer(service, svc, third_party):
    browser = new_browser(service)
    page, _ = start_app_login(browser, third_party, PERSON)
    first = allow(browser, page)
    assert "code" in first.query
    replay = press(browser, page, "allow")
    assert replay.status == 400 and GONE in replay.text.replace("&#39;", "'")
    assert not replay.url.startswith(REDIRECT_URI)


def test_a_form_posted_in_another_persons_session_is_refused(service, svc, third_party):
    victim, attacker = new_browser(service), new_browser(service)
    victim_page, _ = start_app_login(victim, third_party, PERSON)
    attacker_page, _ = start_app_login(attacker, third_party, OTHER)
    _, victim_fields = parse_forms(victim_page.text)[0]
    _, attacker_fields = parse_forms(attacker_page.text)[0]

    # the attacker's own form, sent from the victim's browser (cross-site): the victim's session has another token
    forged = victim.post(CONSENT, {**attacker_fields, "action": "allow"})
    assert forged.status == 400 and FORM_EXPIRED in forged.text
    # the victim's request reference with the attacker's session and token: not the request that session holds
    swapped = attacker.post(CONSENT, {**attacker_fields, "request": victim_fields["request"], "action": "allow"})
    assert swapped.status == 400 and REPLACED in swapped.text
    assert svc.store.count(CONSENTS, {}) == 0
    assert svc.store.count(PENDING_CONSENTS, {}) == 2  # both people can still answer for themselves
    assert "code" in allow(victim, victim_page).query


def test_a_page_replaced_by_a_newer_request_in_the_same_browser_allows_nothing(service, svc, third_party):
    browser = new_browser(service)
    older, _ = start_app_login(browser, third_party, PERSON, "openid")
    newer, _ = start_app_login(browser, third_party, PERSON, "openid records:write")
    refused = press(browser, older, "allow")
    assert refused.status == 400 and REPLACED in refused.text
    assert svc.store.count(CONSENTS, {}) == 0
    assert "code" in allow(browser, newer).query


def test_an_unknown_button_and_the_page_without_a_request_are_refused(service, third_party):
    browser = new_browser(service)
    assert browser.get(CONSENT).status == 400
    page, _ = start_app_login(browser, third_party, PERSON)
    assert press(browser, page, "allow-everything").status == 400


def test_the_consent_page_speaks_dutch_when_the_browser_asks_for_it(service, third_party):
    browser = new_browser(service, accept_language="nl-NL,nl;q=0.9,en;q=0.5")
    page, _ = start_app_login(browser, third_party, PERSON)
    assert '<html lang="nl">' in page.text and "Partner app vraagt toegang tot uw account" in page.text
    assert ">Toestaan</button>" in page.text and ">Weigeren</button>" in page.text
    assert page.response.headers["Content-Language"] == "nl"
    assert "Accept-Language" in page.response.headers["Vary"]


def test_without_a_consent_page_a_third_party_app_gets_consent_required_never_a_code(svc, third_party):
    oauth = svc.oauth
    bare = Authorizer(store=svc.store, vault=svc.vault, clients=oauth.clients, audiences=oauth.audiences,
                      issuer=ISSUER, code_ttl=60, pending_ttl=600, clock=svc.clock, consents=oauth.consents)
    request = bare.validate({"client_id": third_party.client_id, "redirect_uri": REDIRECT_URI,
                             "response_type": "code", "scope": "openid", "state": "s",
                             "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                             "code_challenge_method": "S256"})
    location = bare.complete(bare.park(request).pending_id, PERSON)
    assert "error=consent_required" in location and "code=" not in location


# -- the records, over both store backends ---------------------------------------------------------

def test_consents_merge_withdraw_and_are_forgotten_over_either_store(store):
    clock = FakeClock()
    consents = Consents(store, pending_ttl=600, clock=clock)
    consents.grant("p" * 26, "c1", ["openid"], API)
    merged = consents.grant("p" * 26, "c1", ["records:read"], "https://other.example")
    assert merged.scopes == ("openid", "records:read") and set(merged.audiences) == {API, "https://other.example"}
    assert consents.covers("p" * 26, "c1", ["openid"], API)
    assert consents.covers("p" * 26, "c1", ["records:read"], "https://other.example")
    # each scope for the audience it was allowed for, never the cross product of the two
    assert not consents.covers("p" * 26, "c1", ["openid", "records:read"], API)
    assert not consents.covers("p" * 26, "c1", ["openid"], "https://other.example")
    assert not consents.covers("p" * 26, "c1", ["records:write"], API)
    assert not consents.covers("p" * 26, "c2", ["openid"], API)
    assert store.count(CONSENTS, {"consent_key": consent_key("p" * 26, "c1")}) == 1
    consents.grant("p" * 26, "c2", ["openid"], API)
    assert consents.withdraw("p" * 26, "c1") and not consents.withdraw("p" * 26, "c1")
    assert [c.client_id for c in consents.for_subject("p" * 26)] == ["c2"]
    consent_id = consents.park({"client_id": "c2", "redirect_uri": REDIRECT_URI, "scope": "openid",
                                "audience": API}, "p" * 26)
    assert consents.forget_subject("p" * 26) == 1
    assert consents.pending(consent_id) is None and consents.for_subject("p" * 26) == []


def test_a_record_from_before_scope_by_audience_covers_only_what_it_implies_over_either_store(store):
    consents = Consents(store, pending_ttl=600, clock=FakeClock())
    for client_id, audiences in (("one", [API]), ("two", [API, "https://other.example"])):
        store.insert(CONSENTS, {"consent_key": consent_key("p" * 26, client_id), "subject": "p" * 26,
                                "client_id": client_id, "scopes": ["openid", "records:read"],
                                "audiences": audiences, "granted_at": 1, "updated_at": 1, "version": 1})
    assert consents.covers("p" * 26, "one", ["openid", "records:read"], API)
    assert not consents.covers("p" * 26, "two", ["openid"], API)  # which scope went where was not kept: ask
    merged = consents.grant("p" * 26, "two", ["openid"], API)
    assert merged.covers(["openid"], API) and not merged.covers(["records:read"], "https://other.example")


def test_a_waiting_request_is_taken_once_and_expires_over_either_store(store):
    clock = FakeClock()
    consents = Consents(store, pending_ttl=600, clock=clock)
    fields = {"client_id": "c1", "redirect_uri": REDIRECT_URI, "scope": "openid", "audience": API, "state": "s"}
    first = consents.park(fields, "p" * 26)
    assert present(consents.take(first))["subject"] == "p" * 26 and consents.take(first) is None
    second = consents.park(fields, "p" * 26)
    clock.advance(601)
    assert consents.pending(second) is None and consents.take(second) is None
    assert consents.pending(None) is None and consents.take("") is None


def test_concurrent_allows_of_the_same_app_all_end_up_in_one_record(sqlite_store):
    consents = Consents(sqlite_store, pending_ttl=600, clock=FakeClock())
    scopes = [f"s{i}" for i in range(8)]
    threads = [threading.Thread(target=consents.grant, args=("p" * 26, "c1", [s], API)) for s in scopes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(present(consents.get("p" * 26, "c1")).scopes) == set(scopes)
    assert sqlite_store.count(CONSENTS, {}) == 1
