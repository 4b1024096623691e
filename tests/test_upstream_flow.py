"""The whole login through the broker and the development IdP, as ``make run`` serves it.

App authorization URL → ``/authorize`` (parked) → dev IdP form → ``/login/callback`` (state, code
exchange, ID token) → the app's redirect URI with a code → ``/token`` → tokens whose ``sub`` is the
vault's pseudonym for the e-mail. Plus the callback's refusals that need no forged upstream.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from pathlib import Path

import pytest

from identity.oauth.records import PENDING_AUTHORIZATIONS
from identity.upstream.broker import MAX_SIGNINS_IN_FLIGHT
from identity.upstream.state import UPSTREAM_LOGINS
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import open_access_token, pkce_pair
from tests.upstream_fixtures import DEV_ISSUER_HOST, dev_app, dev_browser, dev_client  # noqa: F401
from tests.upstream_support import Browser, Page, authorization_url, decode_segment, log_in, submit_login

ISSUER = f"http://{DEV_ISSUER_HOST}"
CALLBACK = f"{ISSUER}/login/callback"
EMAIL = "Alice.Liddell@Example.ORG"


def exchange(app, client, code: str, verifier: str) -> dict:
    response = app.test_client().post("/token", base_url=ISSUER, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": client.client_id, "code_verifier": verifier})
    assert response.status_code == 200, response.json
    return response.json


def pseudonym_of(app, email: str) -> str:
    return app.extensions["identity"].vault.pseudonymise(email).identity.pseudonym


def subject_of(app, email: str, **receiver) -> str:
    """The ``sub`` a receiver (``audience=`` or ``client=``) sees for the person with this address."""
    return app.extensions["identity"].oauth.subjects.subject_for(pseudonym_of(app, email), **receiver)


def start(browser: Browser, client) -> tuple[str, Page]:
    """Up to the dev IdP's form; returns the verifier and the form page."""
    verifier, challenge = pkce_pair()
    page = browser.get(authorization_url(ISSUER, client.client_id, REDIRECT_URI, challenge))
    assert page.status == 200 and page.url.startswith(f"{ISSUER}/devidp/authorize?"), page.text
    return verifier, page


def callback_url_of(browser: Browser, client, email: str = EMAIL) -> str:
    """Sign in at the dev IdP but stop before the callback: the URL the IdP sent the browser to."""
    _, page = start(browser, client)
    browser.stop_at = CALLBACK
    url = submit_login(browser, page, email).url
    browser.stop_at = REDIRECT_URI
    return url


def session_cookie_payloads(set_cookies: list[str]) -> list[str]:
    """The JSON inside every Flask session cookie that was set (compressed or not)."""
    payloads = []
    for header in set_cookies:
        value = header.split(";", 1)[0].split("=", 1)[1]
        if not value:
            continue
        compressed = value.startswith(".")
        segment = value.lstrip(".").split(".")[0]
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        payloads.append((zlib.decompress(raw) if compressed else raw).decode())
    return payloads


# -- the whole login ---------------------------------------------------------------------------

def test_whole_login_through_the_dev_idp_gives_tokens_for_the_vault_pseudonym(
        dev_app, dev_client, dev_browser, audience_keys):
    result = log_in(dev_browser, ISSUER, dev_client.client_id, REDIRECT_URI, EMAIL)
    assert result.page.response.status_code == 303
    params = result.params
    assert params["state"] == "app-state" and params["iss"] == ISSUER and params["code"]
    hosts = [h.split("?")[0] for h in dev_browser.hops]
    assert hosts == [f"{ISSUER}/authorize", f"{ISSUER}/devidp/authorize", f"{ISSUER}/devidp/authorize",
                     CALLBACK, REDIRECT_URI]

    body = exchange(dev_app, dev_client, params["code"], result.verifier)
    pseudonym = pseudonym_of(dev_app, EMAIL)
    id_claims = decode_segment(body["id_token"])
    assert id_claims["sub"] == subject_of(dev_app, EMAIL, client=dev_client) != pseudonym
    assert id_claims["aud"] == dev_client.client_id
    assert id_claims["nonce"] == "app-nonce" and id_claims["iss"] == ISSUER
    jwks = dev_app.test_client().get("/.well-known/jwks.json", base_url=ISSUER).json
    _, _, access = open_access_token(body["access_token"], audience_keys[API], jwks)
    assert access["sub"] == subject_of(dev_app, EMAIL, audience=API) != pseudonym and access["aud"] == API


def test_the_same_email_gives_the_same_pseudonym_and_another_email_another(dev_app, dev_client):
    def login_sub(email: str) -> str:
        browser = Browser({DEV_ISSUER_HOST: dev_app}, stop_at=REDIRECT_URI)  # a fresh browser each time
        result = log_in(browser, ISSUER, dev_client.client_id, REDIRECT_URI, email)
        return decode_segment(exchange(dev_app, dev_client, result.params["code"], result.verifier)["id_token"])["sub"]

    first = login_sub("bob@example.org")
    assert login_sub("bob@example.org") == first
    assert login_sub("  BOB@Example.org ") == first  # the vault's normalisation
    other = login_sub("carol@example.org")
    assert other != first
    assert first == subject_of(dev_app, "bob@example.org", client=dev_client)
    assert other == subject_of(dev_app, "carol@example.org", client=dev_client)


def test_no_email_in_any_log_record_cookie_token_url_or_stored_record(
        dev_app, dev_client, dev_browser, audience_keys, caplog, settings):
    caplog.set_level(logging.DEBUG)
    result = log_in(dev_browser, ISSUER, dev_client.client_id, REDIRECT_URI, EMAIL)
    body = exchange(dev_app, dev_client, result.params["code"], result.verifier)
    jwks = dev_app.test_client().get("/.well-known/jwks.json", base_url=ISSUER).json
    _, _, access_claims = open_access_token(body["access_token"], audience_keys[API], jwks)

    needles = {EMAIL, EMAIL.lower(), "liddell"}
    logged = [record.getMessage() for record in caplog.records] + [repr(vars(r)) for r in caplog.records]
    texts = logged + dev_browser.set_cookies + session_cookie_payloads(dev_browser.set_cookies) + dev_browser.hops
    texts += [json.dumps(body), json.dumps(decode_segment(body["id_token"])), json.dumps(access_claims)]
    for text in texts:
        assert not any(n in text.lower() for n in {x.lower() for x in needles}), text
    # the request lines and security events carry no pseudonym, token or code either (personal data, secrets)
    secrets = {access_claims["sub"], body["access_token"], body["refresh_token"], body["id_token"],
               result.params["code"], result.verifier}
    for text in logged:
        assert not any(s in text for s in secrets), text
    login = [r for r in caplog.records if getattr(r, "event", None) == "login"]
    assert [(r.outcome, r.client_id) for r in login] == [("success", dev_client.client_id)]
    assert login[0].getMessage() == "upstream login completed"
    lines = [r for r in caplog.records if r.name == "identity.access"]
    assert {r.route for r in lines} >= {"/authorize", "/login/callback", "/token"}
    assert all(r.request_id and not hasattr(r, "path") for r in lines)

    database = Path(settings.db_uri.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert EMAIL.lower().encode() not in stored.lower() and b"liddell" not in stored.lower()


def test_session_and_idp_cookies_are_httponly_and_samesite_lax(dev_app, dev_client, dev_browser):
    """On the loopback http issuer the dev IdP needs; ``Secure`` under https: test_upstream_tokens.py."""
    log_in(dev_browser, ISSUER, dev_client.client_id, REDIRECT_URI, EMAIL)
    service = [c for c in dev_browser.set_cookies if c.startswith("identity_session=")]
    idp = [c for c in dev_browser.set_cookies if c.startswith("devidp_session=")]
    assert service and idp
    for cookie in service + idp:
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert all("Path=/devidp" in c for c in idp)


# -- callback refusals -----------------------------------------------------------------------

def assert_error_page(page, status: int = 400) -> None:
    assert page.status == status, page.text
    assert page.response.mimetype == "text/html" and "Location" not in page.response.headers
    assert page.response.headers["Cache-Control"] == "no-store"
    assert "Start again from the app" in page.text


def test_a_replayed_callback_is_refused_with_an_error_page(dev_browser, dev_client):
    url = callback_url_of(dev_browser, dev_client)
    first = dev_browser.get(url)
    assert first.url.startswith(REDIRECT_URI) and "code" in first.query
    assert_error_page(dev_browser.get(url))


@pytest.mark.parametrize("query", ["", "?state=", "?state=forged&code=abc", "?code=abc"])
def test_a_callback_with_an_unknown_or_missing_state_is_an_error_page(dev_browser, query):
    assert_error_page(dev_browser.get(f"{CALLBACK}{query}"))


def assert_reaches_the_app_with_a_code(page) -> None:
    assert page.url.startswith(REDIRECT_URI + "?") and "code" in page.query, page.text


def test_a_tampered_state_is_refused_and_the_genuine_one_still_works(dev_browser, dev_client):
    url = callback_url_of(dev_browser, dev_client)
    assert_error_page(dev_browser.get(url.replace("state=", "state=x")))
    assert_reaches_the_app_with_a_code(dev_browser.get(url))


def test_repeated_callback_parameters_are_refused(dev_browser, dev_client):
    url = callback_url_of(dev_browser, dev_client)
    assert_error_page(dev_browser.get(url + "&state=other"))


def test_another_site_cannot_grow_the_session_cookie_until_sign_ins_stop(dev_app, dev_browser, dev_client):
    """Each started sign-in keeps a marker in the session cookie; a page that sends the person's browser
    to /authorize again and again must not push the cookie past what browsers keep (4 KB)."""
    verifier, first = start(dev_browser, dev_client)
    for _ in range(2 * MAX_SIGNINS_IN_FLIGHT):
        _, last = start(dev_browser, dev_client)
    sizes = [len(h) for h in dev_browser.set_cookies if h.startswith("identity_session=")]
    assert max(sizes) < 2000, sizes
    markers = [json.loads(p) for p in session_cookie_payloads(
        [h for h in dev_browser.set_cookies if h.startswith("identity_session=")][-1:])]
    assert sum(key.startswith("_state_") for key in markers[0]) == MAX_SIGNINS_IN_FLIGHT
    assert_reaches_the_app_with_a_code(submit_login(dev_browser, last, EMAIL))  # the newest still completes
    assert_error_page(submit_login(dev_browser, first, EMAIL))  # the oldest was dropped
    assert dev_app.extensions["identity"].store.count(UPSTREAM_LOGINS, {}) < MAX_SIGNINS_IN_FLIGHT


def test_the_callback_only_works_in_the_browser_that_started_the_login(dev_app, dev_browser, dev_client):
    url = callback_url_of(dev_browser, dev_client)
    stranger = Browser({DEV_ISSUER_HOST: dev_app}, stop_at=REDIRECT_URI)  # login CSRF: someone else's callback
    assert_error_page(stranger.get(url))
    # ...and the stranger's attempt did not consume the state: the person's own sign-in still completes
    assert_reaches_the_app_with_a_code(dev_browser.get(url))


def test_an_upstream_state_expires_with_the_pending_login(dev_app, dev_browser, dev_client, settings):
    url = callback_url_of(dev_browser, dev_client)
    store = dev_app.extensions["identity"].store
    for doc in list(store.find(UPSTREAM_LOGINS, {})):
        store.update(UPSTREAM_LOGINS, {"key_hash": doc["key_hash"]}, {"expires_at": 1})
    assert_error_page(dev_browser.get(url))


def test_a_callback_whose_parked_request_is_gone_is_an_error_page(dev_app, dev_browser, dev_client):
    url = callback_url_of(dev_browser, dev_client)
    store = dev_app.extensions["identity"].store
    assert store.delete(PENDING_AUTHORIZATIONS, {}) == 1
    page = dev_browser.get(url)
    assert_error_page(page)
    assert "took too long or was already completed" in page.text


def test_cancel_at_the_idp_is_passed_back_to_the_app_as_access_denied(dev_app, dev_browser, dev_client):
    _, form = start(dev_browser, dev_client)
    page = submit_login(dev_browser, form, "", action="cancel")
    assert page.url.startswith(REDIRECT_URI + "?")
    params = page.query
    assert params["error"] == "access_denied" and params["state"] == "app-state" and params["iss"] == ISSUER
    assert "code" not in params and "cancelled" not in params["error_description"]  # our text, not the IdP's
    assert dev_app.extensions["identity"].store.count(PENDING_AUTHORIZATIONS, {}) == 0


@pytest.mark.parametrize("upstream_error, ours", [
    ("access_denied", "access_denied"), ("login_required", "access_denied"),
    ("temporarily_unavailable", "temporarily_unavailable"), ("server_error", "temporarily_unavailable"),
    ("invalid_scope", "server_error"), ("something_new", "server_error"),
])
def test_upstream_errors_reach_the_app_as_oauth_errors(dev_browser, dev_client, upstream_error, ours):
    url = callback_url_of(dev_browser, dev_client)
    state = url.split("state=")[1].split("&")[0]
    page = dev_browser.get(f"{CALLBACK}?error={upstream_error}&error_description=alice%40example.org+is+blocked"
                           f"&state={state}")
    assert page.url.startswith(REDIRECT_URI)
    assert page.query["error"] == ours and page.query["state"] == "app-state"
    assert "example.org" not in page.query["error_description"]


def test_a_callback_without_a_code_is_refused_to_the_app(dev_browser, dev_client):
    url = callback_url_of(dev_browser, dev_client)
    page = dev_browser.get(url.split("?")[0] + "?state=" + url.split("state=")[1].split("&")[0])
    assert page.query["error"] == "access_denied"


def test_a_callback_naming_another_issuer_is_refused_rfc9207(dev_browser, dev_client):
    url = callback_url_of(dev_browser, dev_client)
    page = dev_browser.get(url.replace("iss=", "iss=https%3A%2F%2Fevil.example.test%2F"))
    assert page.query["error"] == "access_denied"


def test_an_email_the_vault_cannot_use_is_refused_to_the_app(dev_browser, dev_client):
    _, form = start(dev_browser, dev_client)
    page = submit_login(dev_browser, form, "alice@example..org")  # the dev IdP lets it through, the vault not
    assert page.query["error"] == "access_denied" and "code" not in page.query
