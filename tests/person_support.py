"""Helpers for the person's pages without a browser (consent, account, sign-out, UserInfo).

The service is built as ``make run`` builds it (the development IdP mounted, explicit development on
a loopback issuer) on a clock the test moves; a WSGI ``Browser`` keeps cookies and follows redirects
until one leaves for the app's redirect URI.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import pytest

from identity import create_app
from identity.oauth.audiences import parse_encryption_key
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import pkce_pair
from tests.upstream_fixtures import DEV_ISSUER, DEV_ISSUER_HOST, development
from tests.upstream_support import Browser, Page, authorization_url, parse_form, submit_login

ISSUER = DEV_ISSUER
SELF = f"{ISSUER}/me"
ACCOUNT = f"{ISSUER}/account"
CONSENT = f"{ISSUER}/consent"
LOGOUT = f"{ISSUER}/logout"
SIGNED_OUT_URI = "https://app.example.org/signed-out"
PERSON = "person@example.org"
OTHER = "other.person@example.net"


@pytest.fixture
def service(settings, clock, audience_keys):
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
def third_party(svc):
    """An app of another organisation: the person is asked before it gets a code."""
    client, _ = svc.oauth.clients.register(
        name="Partner app", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
        scopes=["openid", "records:read", "records:write"], audiences=[API], third_party=True,
        post_logout_redirect_uris=[SIGNED_OUT_URI])
    return client


@pytest.fixture
def first_party(svc):
    client, _ = svc.oauth.clients.register(name="Own app", public=True, redirect_uris=[REDIRECT_URI],
                                           grant_types=None, scopes=["openid", "records:read"], audiences=[API])
    return client


def new_browser(service, *, accept_language: str | None = None) -> Browser:
    """A WSGI browser for the service; ``accept_language`` is sent with every request."""
    site = service if accept_language is None else _with_header(service, "HTTP_ACCEPT_LANGUAGE", accept_language)
    return Browser({DEV_ISSUER_HOST: site}, stop_at=REDIRECT_URI)


def _with_header(app: Any, name: str, value: str) -> Any:
    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        environ[name] = value
        return app(environ, start_response)
    return wrapped


def start_app_login(browser: Browser, client: Any, email: str, scope: str = "openid") -> tuple[Page, str]:
    """The app's authorization URL → the dev IdP's form → signed in: (where the browser ends, PKCE verifier)."""
    verifier, challenge = pkce_pair()
    form = browser.get(authorization_url(ISSUER, client.client_id, REDIRECT_URI, challenge, scope=scope))
    assert form.status == 200, form.text
    return submit_login(browser, form, email), verifier


def press(browser: Browser, page: Page, action: str | None = None, *, form_index: int = 0,
          **fields: str) -> Page:
    """Submit one of the page's forms (its hidden fields, plus ``action`` and ``fields``)."""
    forms = parse_forms(page.text)
    assert len(forms) > form_index, page.text
    action_url, hidden = forms[form_index]
    data = {**hidden, **fields}
    if action is not None:
        data["action"] = action
    return browser.post(urljoin(page.url, action_url), data)


def parse_forms(html: str) -> list[tuple[str, dict[str, str]]]:
    """Every form on a page: (action, hidden fields)."""
    forms = []
    for chunk in html.split("<form")[1:]:
        parsed = parse_form("<form" + chunk.split("</form>")[0] + "</form>")
        forms.append((parsed.action or "", dict(parsed.fields)))
    return forms


def form_with_action(page: Page, path: str) -> int:
    for index, (action, _) in enumerate(parse_forms(page.text)):
        if action.endswith(path):
            return index
    raise AssertionError(f"no form posts to {path}: {page.text}")


def exchange(service, client: Any, code: str, verifier: str) -> dict[str, Any]:
    response = service.test_client().post("/token", base_url=ISSUER, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": client.client_id, "code_verifier": verifier})
    assert response.status_code == 200, response.json
    return response.json


def refresh(service, client: Any, refresh_token: str):
    return service.test_client().post("/token", base_url=ISSUER, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client.client_id})


def sign_in_to_account(browser: Browser, email: str) -> Page:
    """Open /account, press Sign in, sign in at the dev IdP: the page the browser ends on."""
    start = browser.get(ACCOUNT)
    assert start.status == 200 and 'id="sign-in"' in start.text, start.text
    idp_form = press(browser, start)
    assert idp_form.url.startswith(f"{ISSUER}/devidp/authorize?"), idp_form.text
    return submit_login(browser, idp_form, email)


def account_form(browser: Browser, page: Page, path: str, **fields: str) -> Page:
    """Submit the account page's form that posts to ``path``."""
    return press(browser, page, form_index=form_with_action(page, path), **fields)
