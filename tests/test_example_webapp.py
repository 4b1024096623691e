"""``make demo``: the service, the downstream example and the example app (examples/webapp) together.

The three are served as ``python -m examples.demo`` serves them (real HTTP on 127.0.0.1 for every
back-channel call); the front channel is a WSGI browser. The app signs in with code + PKCE, verifies
its ID token, calls the downstream service, renews access and signs out from discovery alone.
"""

from __future__ import annotations

import re
from typing import Iterator
from urllib.parse import urljoin, urlsplit

import pytest

from examples.demo import Demo, Servers, prepare
from examples.webapp.config import WebAppConfigError, load_config
from tests.person_support import PERSON, parse_forms, press
from tests.upstream_support import Browser, Page, submit_login


@pytest.fixture
def demo(tmp_path) -> Iterator[tuple[Demo, dict[str, str], Servers]]:
    servers = Servers()
    sites = [servers.bind(0) for _ in range(3)]
    urls = dict(zip(("issuer", "records", "app"), (servers.url(s) for s in sites)))
    prepared = prepare(tmp_path / "demo", issuer=urls["issuer"], records_url=urls["records"], app_url=urls["app"])
    for server, app in zip(sites, (prepared.identity, prepared.downstream, prepared.webapp)):
        servers.start(server, app)
    try:
        yield prepared, urls, servers
    finally:
        servers.stop()
        prepared.identity.extensions["identity"].store.close()


def browser_for(demo: Demo, urls: dict[str, str]) -> Browser:
    sites = {urlsplit(urls["issuer"]).netloc: demo.identity, urlsplit(urls["app"]).netloc: demo.webapp}
    return Browser(sites, stop_at="about:never")


def press_form(browser: Browser, page: Page, path: str) -> Page:
    index = next(i for i, (action, _) in enumerate(parse_forms(page.text)) if action == path)
    return press(browser, page, form_index=index)


def field(page: Page, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', page.text)
    assert match, page.text
    return match.group(1)


def test_the_demo_signs_in_shows_verified_claims_calls_the_records_service_and_signs_out(demo, tmp_path):
    prepared, urls, _ = demo
    browser = browser_for(prepared, urls)
    home = browser.get(urls["app"] + "/")
    assert 'id="sign-in"' in home.text
    idp_form = browser.get(urljoin(home.url, "/login"))
    assert idp_form.url.startswith(urls["issuer"] + "/devidp/authorize?")
    consent = submit_login(browser, idp_form, PERSON)
    assert consent.url == urls["issuer"] + "/consent" and "Example app asks for access" in consent.text
    signed_in = press(browser, consent, "allow")
    assert signed_in.url == urls["app"] + "/" and field(signed_in, "title") == "Signed in"

    svc = prepared.identity.extensions["identity"]
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    demo_client = svc.oauth.clients.get(prepared.client_id)
    assert field(signed_in, "claim-sub") == svc.oauth.subjects.subject_for(pseudonym, client=demo_client) != pseudonym
    assert field(signed_in, "claim-iss") == urls["issuer"]
    assert field(signed_in, "claim-aud") == prepared.client_id and PERSON not in signed_in.text

    called = press_form(browser, signed_in, "/records")
    assert "POST /records → 201, GET /records → 200" in called.text.replace("&rarr;", "→")
    assert field(called, "records-pseudonym") == svc.oauth.subjects.subject_for(pseudonym,
                                                                               audience=demo_client.audiences[0])
    renewed = press_form(browser, called, "/refresh")
    assert "Access renewed with the refresh token." in renewed.text

    signed_out = press_form(browser, renewed, "/logout")
    assert signed_out.url.startswith(urls["app"] + "/signed-out?state=")
    assert field(signed_out, "title") == "Signed out"
    assert 'id="sign-in"' in browser.get(urls["app"] + "/").text


def test_deny_brings_the_app_access_denied_and_a_forged_callback_is_refused(demo):
    prepared, urls, _ = demo
    browser = browser_for(prepared, urls)
    consent = submit_login(browser, browser.get(urls["app"] + "/login"), PERSON)
    denied = press(browser, consent, "deny")
    assert denied.url.startswith(urls["app"] + "/callback?error=access_denied")
    assert field(denied, "error") == "access_denied"
    forged = browser.get(urls["app"] + "/callback?code=x&state=guessed&iss=" + urls["issuer"])
    assert forged.status == 400 and field(forged, "title") == "Not our sign-in"


def test_a_second_run_keeps_the_keys_and_the_apps_registration(demo, tmp_path):
    prepared, urls, _ = demo
    again = prepare(tmp_path / "demo", issuer=urls["issuer"], records_url=urls["records"], app_url=urls["app"])
    assert again.client_id == prepared.client_id
    again.identity.extensions["identity"].store.close()
    moved = prepare(tmp_path / "demo", issuer=urls["issuer"], records_url=urls["records"], app_url="http://127.0.0.1:1")
    assert moved.client_id != prepared.client_id  # other URLs: registered anew
    moved.identity.extensions["identity"].store.close()


def test_the_app_alone_needs_its_client_id():
    with pytest.raises(WebAppConfigError, match="WEBAPP_CLIENT_ID"):
        load_config({})
    assert load_config({"WEBAPP_CLIENT_ID": "abc"}).redirect_uri == "http://127.0.0.1:8000/callback"
