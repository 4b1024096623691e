"""UserInfo (identity.web.userinfo, OIDC Core §5.3) and an RP that knows only the discovery document.

A bearer access token for ``{issuer}/me`` with scope ``openid``; ``sub`` as the app sees it (the ID
token's), nothing else, never an e-mail. Refused per RFC 6750: no token, an expired, revoked or
other-audience token, one without ``openid``, a client's own token, an erased or restricted person.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest

from tests.conftest import API, REDIRECT_URI
from tests.lookup_support import present
from tests.oauth_helpers import pkce_pair
from tests.person_support import (  # noqa: F401
    ISSUER, PERSON, SIGNED_OUT_URI, exchange, service, sign_in_to_account, start_app_login, svc,
)
from tests.test_oauth_flow import basic
from tests.upstream_fixtures import DEV_ISSUER_HOST
from tests.upstream_support import Browser, decode_segment, submit_login

SELF = f"{ISSUER}/me"


@pytest.fixture
def rp(svc):
    client, _ = svc.oauth.clients.register(name="RP", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                           scopes=["openid", "identity:self"], audiences=[SELF],
                                           post_logout_redirect_uris=[SIGNED_OUT_URI])
    return client


def tokens_for(service, client, scope: str = "openid", email: str = PERSON) -> dict:
    browser = Browser({DEV_ISSUER_HOST: service}, stop_at=REDIRECT_URI)
    back, verifier = start_app_login(browser, client, email, scope)
    return exchange(service, client, back.query["code"], verifier)


def call(service, token: str | None, method: str = "GET", **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return service.test_client().open("/userinfo", method=method, base_url=ISSUER, headers=headers, **kwargs)


def assert_refused(response, status: int = 401, error: str | None = "invalid_token") -> None:
    assert response.status_code == status
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="identity"')
    if error:
        assert f'error="{error}"' in challenge and response.json["error"] == error
    assert "sub" not in (response.json or {})


def test_userinfo_answers_the_id_tokens_sub_and_nothing_else_by_get_and_post(service, rp):
    tokens = tokens_for(service, rp)
    for method in ("GET", "POST"):
        response = call(service, tokens["access_token"], method)
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert response.json == {"sub": decode_segment(tokens["id_token"])["sub"]}
        assert response.headers["Cache-Control"] == "no-store"
        assert PERSON not in response.get_data(as_text=True)


def test_the_sub_is_the_one_the_client_sees_pairwise_for_a_new_client(service, svc, rp):
    tokens = tokens_for(service, rp)
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    answered = call(service, tokens["access_token"]).json["sub"]
    assert rp.subject_type == "pairwise"
    assert answered == decode_segment(tokens["id_token"])["sub"] == svc.oauth.subjects.subject_for(pseudonym, client=rp)
    assert answered != pseudonym  # the vault pseudonym is never shown to a pairwise client


def test_without_a_token_the_challenge_names_no_error(service):
    response = call(service, None)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Bearer realm="identity"'
    in_query = service.test_client().get("/userinfo?access_token=abc", base_url=ISSUER)
    assert in_query.status_code == 401  # RFC 6750 §2.3 query tokens are never read
    malformed = service.test_client().get("/userinfo", base_url=ISSUER, headers={"Authorization": "Bearer a b"})
    assert_refused(malformed, 400, "invalid_request")


def test_an_expired_token_is_refused(service, rp, clock):
    tokens = tokens_for(service, rp)
    clock.advance(600 + 31)  # the access token's lifetime plus the verifier's leeway
    assert_refused(call(service, tokens["access_token"]))


def test_a_revoked_token_is_refused_at_once(service, rp):
    tokens = tokens_for(service, rp)
    revoked = service.test_client().post("/revoke", base_url=ISSUER, data={
        "token": tokens["refresh_token"], "client_id": rp.client_id})
    assert revoked.status_code == 200
    assert_refused(call(service, tokens["access_token"]))


def test_a_token_for_another_audience_is_refused(service, svc):
    api_app, _ = svc.oauth.clients.register(name="API app", public=True, redirect_uris=[REDIRECT_URI],
                                            grant_types=None, scopes=["openid"], audiences=[API])
    assert_refused(call(service, tokens_for(service, api_app)["access_token"]))


def test_a_token_without_the_openid_scope_is_refused(service, rp):
    tokens = tokens_for(service, rp, scope="identity:self")
    response = call(service, tokens["access_token"])
    assert_refused(response, 403, "insufficient_scope")
    assert 'scope="openid"' in response.headers["WWW-Authenticate"]


def test_a_clients_own_token_has_no_person_to_describe(service, svc):
    backend, secret = svc.oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                                 scopes=["openid"], audiences=[SELF])
    token = service.test_client().post("/token", base_url=ISSUER, headers=basic(backend.client_id, secret),
                                       data={"grant_type": "client_credentials", "scope": "openid"}).json
    assert_refused(call(service, token["access_token"]))


@pytest.mark.parametrize("act", ["erase", "restrict", "close"])
def test_an_erased_restricted_or_closed_person_is_refused(service, svc, rp, act):
    tokens = tokens_for(service, rp)
    pseudonym = svc.vault.find_by_email(PERSON).pseudonym
    getattr(svc.rights, act)(pseudonym, actor="operator", reason="test")
    assert_refused(call(service, tokens["access_token"]))


def test_an_rp_signs_in_calls_userinfo_and_signs_out_from_the_discovery_document_alone(service, rp):
    """What an openid-client style library does: everything from /.well-known/openid-configuration."""
    browser = Browser({DEV_ISSUER_HOST: service}, stop_at="https://app.example.org/")
    metadata = present(browser.get(f"{ISSUER}/.well-known/openid-configuration").response.json)
    assert {"S256"} == set(metadata["code_challenge_methods_supported"])
    verifier, challenge = pkce_pair()
    form = browser.get(metadata["authorization_endpoint"] + "?" + urlencode({
        "response_type": "code", "client_id": rp.client_id, "redirect_uri": REDIRECT_URI, "scope": "openid",
        "state": "st", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256"}))
    back = submit_login(browser, form, PERSON)
    assert back.query["iss"] == metadata["issuer"]
    token_path = urlsplit(metadata["token_endpoint"]).path
    tokens = present(service.test_client().post(token_path, base_url=ISSUER, data={
        "grant_type": "authorization_code", "code": back.query["code"], "redirect_uri": REDIRECT_URI,
        "client_id": rp.client_id, "code_verifier": verifier}).json)
    claims = decode_segment(tokens["id_token"])
    assert claims["nonce"] == "n1" and claims["iss"] == metadata["issuer"]

    info = service.test_client().get(urlsplit(metadata["userinfo_endpoint"]).path, base_url=ISSUER,
                                     headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert present(info.json)["sub"] == claims["sub"]  # OIDC Core §5.3.2: the same sub as the ID token

    page = sign_in_to_account(browser, PERSON)
    assert 'id="pseudonym"' in page.text
    out = browser.get(metadata["end_session_endpoint"] + "?" + urlencode({
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": SIGNED_OUT_URI, "state": "bye"}))
    assert out.url == f"{SIGNED_OUT_URI}?state=bye"
    assert 'id="sign-in"' in browser.get(f"{ISSUER}/account").text
