"""Sign-out (identity.oauth.logout, identity.web.logout): OpenID Connect RP-Initiated Logout 1.0.

The redirect goes only to a ``post_logout_redirect_uri`` registered for the app, exactly; anything else
gets a page. ``id_token_hint`` must be ours (expired is fine); without one that names the person
signed in here, the person is asked first. Signing out ends the account page's session and the
service's session cookie.
"""

from __future__ import annotations


import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.account_sessions import ACCOUNT_SESSIONS
from identity.oauth.logout import INVALID, UNREGISTERED
from identity.web.logout import FORM_EXPIRED
from tests.conftest import REDIRECT_URI
from tests.person_support import (  # noqa: F401
    ACCOUNT, ISSUER, LOGOUT, OTHER, PERSON, SIGNED_OUT_URI, exchange, parse_forms, press, service,
    sign_in_to_account, start_app_login, svc,
)
from tests.upstream_fixtures import DEV_ISSUER_HOST
from tests.upstream_support import Browser, Page, decode_segment

APP_SITE = "https://app.example.org/"


@pytest.fixture
def rp(svc):
    """A first-party app that registered where it wants people back after signing out."""
    client, _ = svc.oauth.clients.register(name="Shop", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                           scopes=["openid"], audiences=[f"{ISSUER}/me"],
                                           post_logout_redirect_uris=[SIGNED_OUT_URI])
    return client


def browser_for(service) -> Browser:
    """Stops at anything on the app's site (its callback and its signed-out page)."""
    return Browser({DEV_ISSUER_HOST: service}, stop_at=APP_SITE)


def signed_in(service, rp, email: str = PERSON) -> tuple[Browser, str]:
    """A browser signed in to the account page, and the app's ID token for the same person."""
    browser = browser_for(service)
    back, verifier = start_app_login(browser, rp, email)
    id_token = exchange(service, rp, back.query["code"], verifier)["id_token"]
    assert 'id="pseudonym"' in sign_in_to_account(browser, email).text
    return browser, id_token


def logout_url(**params: str) -> str:
    from urllib.parse import urlencode
    return f"{LOGOUT}?{urlencode(params)}"


def still_signed_in(browser: Browser) -> bool:
    return 'id="pseudonym"' in browser.get(ACCOUNT).text


def text(page: Page) -> str:
    return page.text.replace("&#39;", "'")


# -- the normal cases ----------------------------------------------------------------------------

def test_discovery_names_the_end_session_and_userinfo_endpoints(service):
    metadata = service.test_client().get("/.well-known/openid-configuration", base_url=ISSUER).json
    assert metadata["end_session_endpoint"] == f"{ISSUER}/logout"
    assert metadata["userinfo_endpoint"] == f"{ISSUER}/userinfo"


def test_a_valid_hint_and_a_registered_uri_sign_out_and_go_back_with_state(service, svc, rp):
    browser, id_token = signed_in(service, rp)
    back = browser.get(logout_url(id_token_hint=id_token, client_id=rp.client_id,
                                  post_logout_redirect_uri=SIGNED_OUT_URI, state="bye-123"))
    assert back.status == 303 and back.url == f"{SIGNED_OUT_URI}?state=bye-123"
    assert back.response.headers["Cache-Control"] == "no-store"
    assert svc.store.count(ACCOUNT_SESSIONS, {}) == 0 and not still_signed_in(browser)
    assert any(c.startswith("identity_account=;") for c in browser.set_cookies)


def test_an_expired_hint_is_still_accepted_for_sign_out(service, svc, clock, rp):
    browser, id_token = signed_in(service, rp)
    clock.advance(3600)  # the ID token (600 s) has expired; the account session is idle-expired too
    back = browser.get(logout_url(id_token_hint=id_token, post_logout_redirect_uri=SIGNED_OUT_URI))
    assert back.status == 303 and back.url == SIGNED_OUT_URI


def test_without_a_hint_the_person_is_asked_and_the_form_then_signs_out(service, svc, rp):
    browser, _ = signed_in(service, rp)
    page = browser.get(logout_url(client_id=rp.client_id, post_logout_redirect_uri=SIGNED_OUT_URI, state="s1"))
    assert page.status == 200 and "Shop asks to sign you out of this service." in page.text
    assert still_signed_in(browser)  # asking changes nothing
    assert f"form-action 'self' {APP_SITE.rstrip('/')}" in page.response.headers["Content-Security-Policy"]
    back = press(browser, page)
    assert back.status == 303 and back.url == f"{SIGNED_OUT_URI}?state=s1"
    assert not still_signed_in(browser)


def test_a_hint_for_someone_else_than_the_person_signed_in_here_asks_first(service, svc, rp):
    _, other_token = signed_in(service, rp, OTHER)
    browser, _ = signed_in(service, rp, PERSON)
    page = browser.get(logout_url(id_token_hint=other_token, post_logout_redirect_uri=SIGNED_OUT_URI))
    assert page.status == 200 and 'id="sign-out"' in page.text and still_signed_in(browser)


def test_the_account_pages_sign_out_button_ends_the_session_and_shows_a_page(service, svc, rp):
    browser, _ = signed_in(service, rp)
    account = browser.get(ACCOUNT)
    index = next(i for i, (action, _) in enumerate(parse_forms(account.text)) if action == "/logout")
    done = press(browser, account, form_index=index)
    assert done.status == 200 and "You are signed out" in done.text and not still_signed_in(browser)


def test_an_app_may_post_the_request_as_the_specification_allows(service, svc, rp):
    browser, id_token = signed_in(service, rp)
    back = browser.post(LOGOUT, {"id_token_hint": id_token, "post_logout_redirect_uri": SIGNED_OUT_URI})
    assert back.status == 303 and back.url == SIGNED_OUT_URI and not still_signed_in(browser)


# -- refusals: a page, never a redirect ----------------------------------------------------------

@pytest.mark.parametrize("target", [
    "https://evil.example/signed-out",
    "https://app.example.org/signed-out/",
    "https://app.example.org/signed-out?next=https://evil.example",
    "https://app.example.org/signed-out#x",
    "https://app.example.org/signed-outx",
    "HTTPS://APP.EXAMPLE.ORG/signed-out",
    "https://app.example.org@evil.example/signed-out",
    "https://app.example.org:444/signed-out",
    "//evil.example/signed-out",
    "javascript:alert(1)",
    REDIRECT_URI,  # registered as the app's redirect URI, not for after signing out
])
def test_an_unregistered_post_logout_redirect_uri_gets_a_page_and_no_redirect(service, svc, rp, target):
    browser, id_token = signed_in(service, rp)
    page = browser.get(logout_url(id_token_hint=id_token, client_id=rp.client_id, post_logout_redirect_uri=target,
                                  state="s"))
    assert page.status == 400 and "Location" not in page.response.headers
    assert UNREGISTERED in text(page) and target.replace("&", "&amp;") not in page.text
    assert still_signed_in(browser)  # nothing happened, but the page offers a plain sign-out:
    done = press(browser, page)
    assert done.status == 200 and "You are signed out" in done.text and not still_signed_in(browser)


def test_a_redirect_needs_the_app_named_by_client_id_or_the_hint(service, rp):
    browser, _ = signed_in(service, rp)
    page = browser.get(logout_url(post_logout_redirect_uri=SIGNED_OUT_URI))
    assert page.status == 400 and UNREGISTERED in text(page) and still_signed_in(browser)


def forge(claims: dict, *, key=None, kid: str | None = None, headers: dict | None = None,
          algorithm: str = "RS256") -> str:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm=algorithm, headers={"typ": "JWT", "kid": kid or "x", **(headers or {})})


def test_a_hint_that_is_not_ours_gets_a_page(service, svc, rp):
    browser, id_token = signed_in(service, rp)
    signing = svc.keyring.active_signing_key()
    claims = {**decode_segment(id_token)}
    forged = [
        forge(claims, kid=signing.kid),  # another key under our kid
        forge({**claims, "iss": "https://evil.example"}, key=signing.private_key, kid=signing.kid),
        forge(claims, key=signing.private_key, kid=signing.kid, headers={"typ": "at+jwt"}),
        jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": signing.kid}),
        id_token.rsplit(".", 1)[0] + ".",  # signature stripped
        "not-a-token",
    ]
    for hint in forged:
        page = browser.get(logout_url(id_token_hint=hint, post_logout_redirect_uri=SIGNED_OUT_URI))
        assert page.status == 400 and INVALID in text(page), hint
    assert still_signed_in(browser)


def test_a_hint_for_another_app_than_client_id_gets_a_page(service, svc, rp):
    other, _ = svc.oauth.clients.register(name="Other", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                          scopes=["openid"], audiences=[f"{ISSUER}/me"],
                                          post_logout_redirect_uris=["https://other.example.org/bye"])
    browser, id_token = signed_in(service, rp)
    page = browser.get(logout_url(id_token_hint=id_token, client_id=other.client_id,
                                  post_logout_redirect_uri="https://other.example.org/bye"))
    assert page.status == 400 and INVALID in text(page) and still_signed_in(browser)


def test_an_unknown_client_or_a_repeated_parameter_gets_a_page(service, rp):
    browser, _ = signed_in(service, rp)
    assert browser.get(logout_url(client_id="nope")).status == 400
    repeated = browser.get(f"{LOGOUT}?client_id={rp.client_id}&client_id={rp.client_id}")
    assert repeated.status == 400 and still_signed_in(browser)


def test_the_confirmation_form_needs_this_sessions_csrf_token(service, rp):
    browser, _ = signed_in(service, rp)
    refused = browser.post(LOGOUT, {"confirm": "yes", "csrf_token": "forged"})
    assert refused.status == 400 and FORM_EXPIRED in refused.text and still_signed_in(browser)
    missing = browser.post(LOGOUT, {"confirm": "yes"})
    assert missing.status == 400 and still_signed_in(browser)


def test_clients_register_post_logout_redirect_uris_with_the_redirect_uri_rules(svc):
    from identity.oauth.clients import ClientRegistrationError
    for bad in ("http://app.example.org/bye", "https://app.example.org/bye#x", "https://u:p@app.example.org/"):
        with pytest.raises(ClientRegistrationError, match="post-logout redirect URI"):
            svc.oauth.clients.register(name="x", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                       scopes=None, audiences=[], post_logout_redirect_uris=[bad])


def test_a_hint_from_an_app_the_person_never_used_records_no_subject_for_them(service, svc, rp):
    """The hint is compared with the person signed in here by computing that app's ``sub`` for them; no pairwise
    row is written in the app's sector (the person's export would then list an app that never knew them)."""
    from identity.pairwise import SECTOR_SUBJECTS

    tracker, _ = svc.oauth.clients.register(name="Tracker", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                            scopes=["openid"], audiences=[f"{ISSUER}/me"],
                                            sector_identifier="tracker.example.com")
    _, tracker_token = signed_in(service, tracker, OTHER)  # the tracker's own user, and its ID token
    browser, _ = signed_in(service, rp, PERSON)
    person = svc.vault.find_by_email(PERSON).pseudonym
    rows, sectors = svc.store.count(SECTOR_SUBJECTS, {}), svc.rights.export(person)["subjects"]["sectors"]
    page = browser.get(logout_url(id_token_hint=tracker_token))  # an <img> on the tracker's page, say
    assert page.status == 200 and 'id="sign-out"' in page.text and still_signed_in(browser)  # asked first
    assert svc.store.count(SECTOR_SUBJECTS, {}) == rows
    assert svc.rights.export(person)["subjects"]["sectors"] == sectors
