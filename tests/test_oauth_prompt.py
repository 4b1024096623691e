"""``prompt`` and ``max_age`` (OpenID Connect Core §3.1.2.1) and the ID token's ``auth_time`` (§2).

``prompt`` is a space-delimited set: ``none`` with another value is ``invalid_request``; ``login`` (or
``max_age=0``) makes the broker ask the IdP for a fresh sign-in, another ``max_age`` is passed on, and an
upstream ``auth_time`` older than either allows is refused. Both are parked with the request across the
upstream round-trip. ``auth_time`` is the IdP's when it gives one, else when the upstream login completed,
never the time of the code exchange.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from identity.oauth.authorize import PendingAuthorization
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import DirectLoginBroker, pkce_pair, query_of
from tests.person_support import (  # noqa: F401
    CONSENT, ISSUER as DEV_ISSUER, PERSON, new_browser, press, service, svc, third_party,
)
from tests.test_oauth_authorize import assert_redirect_error, params_for
from tests.upstream_fixtures import (  # noqa: F401
    UPSTREAM, broker_app, broker_browser, broker_client, tampering, upstream_idp,
)
from tests.upstream_support import authorization_url, decode_segment, submit_login

ISSUER = "https://id.example.test"
THREE_DAYS = 3 * 24 * 3600


class RecordingBroker(DirectLoginBroker):
    """The stand-in broker, keeping what ``/authorize`` handed it and what it parked."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: list[PendingAuthorization] = []
        self.parked: list[dict[str, Any]] = []

    def begin(self, pending: PendingAuthorization) -> Any:
        assert self.app is not None
        self.begun.append(pending)
        self.parked.append(self.app.extensions["identity"].oauth.authorizer.pending(pending.pending_id) or {})
        return super().begin(pending)


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


# -- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["none login", "login none", "consent none", "none select_account"])
def test_prompt_none_with_another_value_is_invalid_request(oauth_client, public_app, broker, prompt):
    assert_redirect_error(oauth_client.get("/authorize", query_string=params_for(public_app, prompt=prompt)),
                          "invalid_request")
    assert broker.begun == []


def test_prompt_none_alone_is_login_required(oauth_client, public_app, broker):
    assert_redirect_error(oauth_client.get("/authorize", query_string=params_for(public_app, prompt="none")),
                          "login_required")


@pytest.mark.parametrize("prompt", ["bogus", "login bogus", "LOGIN"])
def test_an_unknown_prompt_value_is_invalid_request(oauth_client, public_app, prompt):
    assert_redirect_error(oauth_client.get("/authorize", query_string=params_for(public_app, prompt=prompt)),
                          "invalid_request")


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", " 5", "", "1e3", "٣", "1234567890"])
def test_a_max_age_that_is_not_a_number_of_seconds_is_invalid_request(oauth_client, public_app, max_age):
    assert_redirect_error(oauth_client.get("/authorize", query_string=params_for(public_app, max_age=max_age)),
                          "invalid_request")


def test_max_age_given_twice_is_invalid_request(oauth_client, public_app):
    query = "&".join(f"{k}={v}" for k, v in params_for(public_app).items())
    assert_redirect_error(oauth_client.get(f"/authorize?{query}&max_age=5&max_age=5"), "invalid_request")


@pytest.mark.parametrize(("extra", "reauthenticate", "max_age", "parked"), [
    ({}, False, None, {"prompt": None, "max_age": None}),
    ({"prompt": "login"}, True, None, {"prompt": "login", "max_age": None}),
    ({"prompt": "consent  login"}, True, None, {"prompt": "consent login", "max_age": None}),
    ({"prompt": "select_account"}, False, None, {"prompt": "select_account", "max_age": None}),
    ({"max_age": "0"}, True, None, {"prompt": None, "max_age": 0}),
    ({"max_age": "300"}, False, 300, {"prompt": None, "max_age": 300}),
    ({"prompt": "login", "max_age": "300"}, True, None, {"prompt": "login", "max_age": 300}),
])
def test_prompt_and_max_age_are_parked_with_the_request_and_handed_to_the_broker(
        oauth_client, public_app, broker, extra, reauthenticate, max_age, parked):
    response = oauth_client.get("/authorize", query_string=params_for(public_app, **extra))
    assert "code" in query_of(response.headers["Location"]), response.headers["Location"]
    [pending] = broker.begun
    assert (pending.reauthenticate, pending.max_age) == (reauthenticate, max_age)
    assert {k: broker.parked[0].get(k) for k in parked} == parked


def test_without_an_upstream_auth_time_the_code_carries_when_the_login_completed(
        oauth_client, public_app, clock):
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string=params_for(
        public_app, code_challenge=challenge, scope="openid", max_age="600"))
    completed_at = int(clock())
    clock.advance(45)  # the app exchanges its code later: auth_time stays the sign-in's
    tokens = oauth_client.post("/token", data={
        "grant_type": "authorization_code", "code": query_of(response.headers["Location"])["code"],
        "client_id": public_app.client_id, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}).json
    assert decode_segment(tokens["id_token"])["auth_time"] == completed_at


# -- through the upstream IdP ----------------------------------------------------------------------

def upstream_login(broker_app, broker_browser, broker_client, tampering, *, auth_time_ago: int | None,
                   **extra: str) -> tuple[dict[str, str], dict[str, str], dict[str, Any] | None, int | None]:
    """An app's login with ``extra`` parameters, the IdP claiming a sign-in ``auth_time_ago`` seconds before
    its ID token (None: no auth_time): (the IdP's authorize params, the app's callback params, the ID token's
    claims if a code came back, the IdP's auth_time)."""
    upstream: dict[str, Any] = {}

    def sign_in_at(header: dict[str, Any], claims: dict[str, Any]) -> str:
        claims = {k: v for k, v in claims.items() if k != "auth_time"}
        if auth_time_ago is not None:
            claims["auth_time"] = upstream["auth_time"] = claims["iat"] - auth_time_ago
        return tampering.sign(header, claims)

    tampering.tamper = sign_in_at
    verifier, challenge = pkce_pair()
    form = broker_browser.get(authorization_url(ISSUER, broker_client.client_id, REDIRECT_URI, challenge, **extra))
    [asked] = [query_of(h) for h in broker_browser.hops if h.startswith(f"{UPSTREAM}/authorize?")]
    back = submit_login(broker_browser, form, PERSON)
    if "code" not in back.query:
        return asked, back.query, None, upstream.get("auth_time")
    tokens = broker_app.test_client().post("/token", base_url=ISSUER, data={
        "grant_type": "authorization_code", "code": back.query["code"], "redirect_uri": REDIRECT_URI,
        "client_id": broker_client.client_id, "code_verifier": verifier}).json
    return asked, back.query, decode_segment(tokens["id_token"]), upstream.get("auth_time")


def test_an_apps_login_keeps_single_sign_on_and_its_auth_time_is_the_idps(
        broker_app, broker_browser, broker_client, tampering):
    asked, _, claims, signed_in_at = upstream_login(broker_app, broker_browser, broker_client, tampering,
                                                    auth_time_ago=THREE_DAYS)
    assert "prompt" not in asked and "max_age" not in asked
    assert claims is not None and claims["auth_time"] == signed_in_at  # three days ago, not now


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}, {"prompt": "login", "max_age": "3600"}])
def test_prompt_login_asks_the_idp_for_a_fresh_sign_in(broker_app, broker_browser, broker_client, tampering, extra):
    asked, _, claims, signed_in_at = upstream_login(broker_app, broker_browser, broker_client, tampering,
                                                    auth_time_ago=2, **extra)
    assert asked["prompt"] == "login" and asked["max_age"] == "0"
    assert claims is not None and claims["auth_time"] == signed_in_at


@pytest.mark.parametrize("auth_time_ago", [THREE_DAYS, None])
def test_prompt_login_refuses_an_idp_answer_without_a_fresh_sign_in(
        broker_app, broker_browser, broker_client, tampering, auth_time_ago):
    _, back, claims, _ = upstream_login(broker_app, broker_browser, broker_client, tampering,
                                        auth_time_ago=auth_time_ago, prompt="login")
    assert claims is None and back["error"] == "access_denied" and back["state"] == "app-state"


@pytest.mark.parametrize(("auth_time_ago", "accepted"), [(600, True), (2 * 3600, False), (None, False)])
def test_max_age_is_passed_to_the_idp_and_its_auth_time_checked_against_it(
        broker_app, broker_browser, broker_client, tampering, auth_time_ago, accepted):
    asked, back, claims, signed_in_at = upstream_login(broker_app, broker_browser, broker_client, tampering,
                                                       auth_time_ago=auth_time_ago, max_age="3600")
    assert asked["max_age"] == "3600" and "prompt" not in asked
    if accepted:
        assert claims is not None and claims["auth_time"] == signed_in_at
    else:
        assert claims is None and back["error"] == "access_denied"


def test_without_an_auth_time_from_the_idp_the_id_token_has_the_time_the_login_completed(
        broker_app, broker_browser, broker_client, tampering):
    before = int(time.time())
    _, _, claims, _ = upstream_login(broker_app, broker_browser, broker_client, tampering, auth_time_ago=None)
    assert claims is not None and before <= claims["auth_time"] <= int(time.time())


def test_a_consent_step_keeps_the_idps_auth_time(broker_app, broker_browser, broker_client, tampering):
    svc = broker_app.extensions["identity"]  # broker_client: the API audience is registered
    partner, _ = svc.oauth.clients.register(name="Partner app", public=True, redirect_uris=[REDIRECT_URI],
                                            grant_types=None, scopes=["openid"], audiences=[API], third_party=True)
    upstream: dict[str, int] = {}

    def sso(header: dict[str, Any], claims: dict[str, Any]) -> str:
        upstream["auth_time"] = claims["iat"] - THREE_DAYS
        return tampering.sign(header, {**claims, "auth_time": upstream["auth_time"]})

    tampering.tamper = sso
    verifier, challenge = pkce_pair()
    form = broker_browser.get(authorization_url(ISSUER, partner.client_id, REDIRECT_URI, challenge))
    page = submit_login(broker_browser, form, PERSON)
    assert page.url == f"{ISSUER}/consent", page.url
    back = press(broker_browser, page, "allow")
    tokens = broker_app.test_client().post("/token", base_url=ISSUER, data={
        "grant_type": "authorization_code", "code": back.query["code"], "redirect_uri": REDIRECT_URI,
        "client_id": partner.client_id, "code_verifier": verifier}).json
    assert decode_segment(tokens["id_token"])["auth_time"] == upstream["auth_time"]


# -- prompt=consent ----------------------------------------------------------------------------------

def test_prompt_consent_asks_a_third_party_apps_person_again(service, svc, third_party):
    browser = new_browser(service)

    def log_in(**extra: str):
        _, challenge = pkce_pair()
        form = browser.get(authorization_url(DEV_ISSUER, third_party.client_id, REDIRECT_URI, challenge, **extra))
        return submit_login(browser, form, PERSON)

    first = log_in()
    assert first.url == CONSENT and "code" in press(browser, first, "allow").query
    assert log_in().url.startswith(REDIRECT_URI + "?")  # allowed once: straight through
    assert log_in(prompt="consent").url == CONSENT  # asked again, as the app asked
