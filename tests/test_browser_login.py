"""A real browser (headless Chromium from Debian, driven by Selenium) logs in from an app's
authorization URL to the code at its redirect URI, against the development set-up served on
127.0.0.1; the code is then exchanged and the ID token's ``sub`` is the person's subject in the app's sector.

Skipped, saying why, where Chromium is not installed (``.ci/run`` installs it:
``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import pytest
import requests
from werkzeug.wrappers import Request, Response

from identity import create_app
from tests.oauth_helpers import pkce_pair, query_of
from tests.upstream_fixtures import register_app_client
from tests.upstream_support import LiveServer, authorization_url, decode_segment

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Chromium is not installed: apt-get install -y chromium chromium-driver (as .ci/run does)",
                allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@Request.application
def relying_app(request: Request) -> Response:
    """The app's redirect URI: a page that says it got a code (it never shows the code)."""
    state = "with a code" if "code" in request.args else "with an error"
    return Response(f"<!doctype html><title>App</title><h1 id='done'>Back at the app {state}</h1>",
                    mimetype="text/html")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def served(settings, audience_keys) -> Iterator[tuple[str, object, object, str]]:
    """(service URL, app, registered client, redirect URI), both sites on real 127.0.0.1 ports."""
    with LiveServer(relying_app) as app_site, LiveServer() as service:
        app = create_app(dataclasses.replace(settings, issuer=service.url, env_explicit=True))
        service.app = app
        redirect_uri = f"{app_site.url}/callback"
        client = register_app_client(app, audience_keys, redirect_uri)
        yield service.url, app, client, redirect_uri
        app.extensions["identity"].store.close()


def test_a_person_logs_in_with_a_real_browser_and_the_app_gets_a_code(browser, served):
    service_url, app, client, redirect_uri = served
    verifier, challenge = pkce_pair()
    browser.delete_all_cookies()
    browser.get(authorization_url(service_url, client.client_id, redirect_uri, challenge))
    assert browser.current_url.startswith(f"{service_url}/devidp/authorize?")
    label = browser.find_element(By.CSS_SELECTOR, "label[for=email]")
    assert label.text == "E-mail address"
    browser.find_element(By.ID, "email").send_keys("Mia.Wallace@Example.org")
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_contains(redirect_uri))

    assert browser.current_url.startswith(redirect_uri + "?")
    assert browser.find_element(By.ID, "done").text == "Back at the app with a code"
    params = query_of(browser.current_url)
    assert params["state"] == "app-state" and params["iss"] == service_url
    tokens = requests.post(f"{service_url}/token", timeout=10, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect_uri,
        "client_id": client.client_id, "code_verifier": verifier}).json()
    pseudonym = app.extensions["identity"].vault.pseudonymise("mia.wallace@example.org").identity.pseudonym
    subject = app.extensions["identity"].oauth.subjects.subject_for(pseudonym, client=client.client_id)
    assert decode_segment(tokens["id_token"])["sub"] == subject != pseudonym  # the app's sector's subject

    for cookie in browser.get_cookies():
        assert "example.org" not in cookie["value"].lower() and cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"


def test_cancel_in_a_real_browser_brings_the_app_access_denied(browser, served):
    service_url, _, client, redirect_uri = served
    _, challenge = pkce_pair()
    browser.delete_all_cookies()
    browser.get(authorization_url(service_url, client.client_id, redirect_uri, challenge))
    browser.find_element(By.ID, "cancel").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_contains(redirect_uri))
    params = query_of(browser.current_url)
    assert params["error"] == "access_denied" and params["state"] == "app-state" and "code" not in params


def test_an_empty_address_is_caught_before_leaving_the_page(browser, served):
    service_url, _, client, redirect_uri = served
    _, challenge = pkce_pair()
    browser.delete_all_cookies()
    browser.get(authorization_url(service_url, client.client_id, redirect_uri, challenge))
    form_url = browser.current_url
    browser.find_element(By.ID, "sign-in").click()  # the field is required: the browser keeps us here
    assert browser.current_url == form_url
    assert browser.find_element(By.ID, "email").get_attribute("validationMessage")
