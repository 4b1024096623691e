"""Another site's forms: a POST to ``/logout`` or ``/authorize`` from a page elsewhere.

Browsers send no SameSite=Lax cookie with a cross-site POST, so such a request cannot tell who is signed in
here; but they do store the cookies its (top-level) response sets. So neither endpoint acts on it: each
answers 303 to the same request as a GET (which the browser sends with its cookies), and no answer deletes
or replaces a cookie the request did not carry (the account page's session, or the session cookie holding
a sign-in or an e-mail change under way).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from werkzeug.test import Client, TestResponse

from tests.conftest import REDIRECT_URI
from tests.oauth_helpers import pkce_pair
from tests.person_support import (  # noqa: F401
    ACCOUNT, ISSUER, LOGOUT, OTHER, PERSON, SIGNED_OUT_URI, exchange, first_party, press, service,
    sign_in_to_account, start_app_login, svc, third_party,
)
from tests.upstream_fixtures import DEV_ISSUER_HOST
from tests.upstream_support import Browser, Page, submit_login

APP_SITE = "https://app.example.org/"


def browser_for(service: Any) -> Browser:
    return Browser({DEV_ISSUER_HOST: service}, stop_at=APP_SITE)


def cross_site(service: Any, victim: Browser, path: str, data: dict[str, str]) -> TestResponse:
    """What a browser does with another site's auto-submitted form: POST without the Lax cookies, then keep
    whatever Set-Cookie the (top-level) answer carries."""
    response = Client(service, use_cookies=False).post(path, base_url=ISSUER, data=data)
    victim.client._update_cookies_from_response(DEV_ISSUER_HOST.split(":")[0], "/",
                                                response.headers.getlist("Set-Cookie"))
    return response


def follow(victim: Browser, response: TestResponse) -> Page:
    """The browser follows the 303 (a GET, with its cookies)."""
    return victim.get(ISSUER + response.headers["Location"])


def as_get_of(response: TestResponse, path: str, data: dict[str, str]) -> bool:
    location = urlsplit(response.headers.get("Location", ""))
    return (response.status_code == 303 and location.path == path
            and sorted(parse_qsl(location.query, keep_blank_values=True)) == sorted(data.items()))


def signed_in_to_account(victim: Browser) -> bool:
    return 'id="pseudonym"' in victim.get(ACCOUNT).text


def email_change_under_way(service: Any) -> tuple[Browser, Page]:
    """A browser at step 1 of an e-mail change (the IdP's form); its session cookie holds the change."""
    start_app_login(Browser({DEV_ISSUER_HOST: service}, stop_at=REDIRECT_URI), first_party_of(service), PERSON)
    victim = browser_for(service)
    return victim, press(victim, victim.get(f"{ISSUER}/me/email/change"), "start")


def first_party_of(service: Any) -> Any:
    client, _ = service.extensions["identity"].oauth.clients.register(
        name="Own app", public=True, redirect_uris=[REDIRECT_URI], grant_types=None, scopes=["openid"],
        audiences=[f"{ISSUER}/me"])
    return client


def attackers_id_token(service: Any, client: Any) -> str:
    attacker = browser_for(service)
    back, verifier = start_app_login(attacker, client, OTHER)
    back = press(attacker, back, "allow") if back.url.endswith("/consent") else back
    return exchange(service, client, back.query["code"], verifier)["id_token"]


# -- /logout -------------------------------------------------------------------------------------

def test_another_sites_post_with_its_own_hint_signs_nobody_out_and_sets_no_cookie(service, svc, third_party):
    hint = attackers_id_token(service, third_party)
    victim = browser_for(service)
    start_app_login(victim, third_party, PERSON)
    assert 'id="pseudonym"' in sign_in_to_account(victim, PERSON).text
    data = {"id_token_hint": hint, "post_logout_redirect_uri": SIGNED_OUT_URI}
    response = cross_site(service, victim, "/logout", data)
    assert as_get_of(response, "/logout", data) and response.headers.getlist("Set-Cookie") == []
    asked = follow(victim, response)  # the victim's browser, its cookies: the hint is someone else's
    assert asked.status == 200 and "Sign out?" in asked.text
    assert signed_in_to_account(victim)


def test_another_sites_post_changes_no_cookie_whatever_it_carries(service, svc, third_party):
    hint = attackers_id_token(service, third_party)
    victim, idp_form = email_change_under_way(service)
    for data in ({}, {"confirm": "yes"}, {"confirm": "yes", "csrf_token": "x", "id_token_hint": hint},
                 {"id_token_hint": hint}, {"client_id": "unknown"}):
        response = cross_site(service, victim, "/logout", data)
        assert response.status_code in (303, 400) and response.headers.getlist("Set-Cookie") == [], data
    back = submit_login(victim, idp_form, PERSON)
    assert back.status == 200 and "Step 2 of 2" in back.text  # the e-mail change went on


def test_a_sign_out_by_get_leaves_alone_the_cookies_it_was_not_sent(service, svc, third_party):
    hint = attackers_id_token(service, third_party)
    response = Client(service, use_cookies=False).get("/logout", base_url=ISSUER, query_string={
        "id_token_hint": hint})
    assert response.status_code == 200 and "You are signed out" in response.get_data(as_text=True)
    assert response.headers.getlist("Set-Cookie") == []


def test_an_apps_post_is_asked_again_as_a_get_which_then_signs_out(service, svc, third_party):
    browser = browser_for(service)
    back, verifier = start_app_login(browser, third_party, PERSON)
    hint = exchange(service, third_party, press(browser, back, "allow").query["code"], verifier)["id_token"]
    assert 'id="pseudonym"' in sign_in_to_account(browser, PERSON).text
    data = {"id_token_hint": hint, "post_logout_redirect_uri": SIGNED_OUT_URI, "state": "bye"}
    response = Client(service, use_cookies=False).post("/logout", base_url=ISSUER, data=data)
    assert as_get_of(response, "/logout", data)
    done = follow(browser, response)
    assert done.url == f"{SIGNED_OUT_URI}?state=bye" and not signed_in_to_account(browser)


# -- /authorize ----------------------------------------------------------------------------------

def authorize_form(client: Any) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {"client_id": client.client_id, "response_type": "code", "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid", "state": "s"}


def test_another_sites_post_to_authorize_is_asked_again_as_a_get_and_keeps_the_session(service, svc):
    victim, idp_form = email_change_under_way(service)
    data = authorize_form(first_party_of(service))
    response = cross_site(service, victim, "/authorize", data)
    assert as_get_of(response, "/authorize", data) and response.headers.getlist("Set-Cookie") == []
    assert response.headers["Cache-Control"] == "no-store"
    back = submit_login(victim, idp_form, PERSON)
    assert back.status == 200 and "Step 2 of 2" in back.text  # the e-mail change went on


def test_a_post_to_authorize_with_the_session_cookie_goes_straight_to_the_login(service, svc):
    browser = browser_for(service)
    browser.get(ACCOUNT)  # this browser has a session cookie
    page = browser.post(f"{ISSUER}/authorize", authorize_form(first_party_of(service)))
    assert page.status == 200 and browser.hops[2].startswith(f"{ISSUER}/devidp/authorize?"), browser.hops
    back = submit_login(browser, page, PERSON)
    assert back.url.startswith(REDIRECT_URI + "?") and "code" in back.query
