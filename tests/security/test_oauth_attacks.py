"""OAuth attacks (RFC 9700) that tests/test_oauth_*.py do not already try: PKCE verifiers of the wrong
length or alphabet, and encoded, escaped or injected redirect URIs (error page, never a redirect)."""

from __future__ import annotations

import pytest

from tests.conftest import REDIRECT_URI
from tests.oauth_helpers import pkce_pair, query_of

# The whole module runs twice: /token through its fast path, then through Flask; answers compared.
pytestmark = pytest.mark.usefixtures("token_path")


def get_code(oauth_client, app_client):
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid"})
    return query_of(response.headers["Location"])["code"], verifier


def exchange(oauth_client, app_client, code, verifier):
    return oauth_client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                             "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
                                             "code_verifier": verifier})


@pytest.mark.parametrize("make_bad", [
    lambda v: v + "a" * (129 - len(v)),   # RFC 7636 §4.1: at most 128 characters
    lambda v: v[:42],                      # at least 43
    lambda v: v[:-1] + "=",                # outside the unreserved alphabet
    lambda v: v[:-1] + " ",
    lambda v: v[:-1] + "é",
    lambda v: v.upper(),                   # right length, wrong value
], ids=["129 chars", "42 chars", "padding", "space", "non-ascii", "case changed"])
def test_pkce_verifiers_of_the_wrong_shape_or_value_are_refused_without_burning_the_code(oauth_client, public_app,
                                                                                        make_bad):
    code, verifier = get_code(oauth_client, public_app)
    refused = exchange(oauth_client, public_app, code, make_bad(verifier))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
    assert exchange(oauth_client, public_app, code, verifier).status_code == 200


@pytest.mark.parametrize("uri", [
    "https://app.example.org/callback%2F..%2Fevil", "https://app.example.org/callback/../callback",
    "https://app.example.org/./callback", "https://app.example.org%2Fcallback",
    "https://app.example.org\\@evil.example/callback",
    "https://app.example.org/callback\r\nLocation: https://evil.example", "https://app.example.org/callback%0d%0aX: y",
    "https://app.example.org./callback", "https://app.exampIe.org/callback", "https://xn--app-example-org/callback",
    "//app.example.org/callback", "https:/app.example.org/callback", "https://app.example.org/callback?",
    "https://app.example.org/callback#", " https://app.example.org/callback", "https://app.example.org/callback ",
    "javascript:alert(1)//https://app.example.org/callback", "data:text/html,https://app.example.org/callback",
    "http://[", "https://[::1/callback", "https://app.example.org]/callback",  # unbalanced IPv6 brackets
    "http://127.0.0.1:99999/callback", "http://[::1]:x/callback",
])
def test_encoded_escaped_and_injected_redirect_uris_get_an_error_page(oauth_client, public_app, uri):
    _, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": public_app.client_id, "redirect_uri": uri,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "Location" not in response.headers


def test_an_unregistered_redirect_uri_never_receives_an_error_redirect_either(oauth_client, public_app):
    """Errors after the redirect check go to the registered URI; before it, nothing is sent anywhere."""
    response = oauth_client.get("/authorize", query_string={
        "response_type": "token", "client_id": public_app.client_id, "redirect_uri": "https://evil.example/cb"})
    assert response.status_code == 400 and "Location" not in response.headers


# -- authorization code injection (RFC 9700 §2.1.1, §4.5) ----------------------------------------

def test_a_confidential_code_flow_without_pkce_is_refused(oauth_client, web_app):
    """Without PKCE (and without the nonce exception) there is no defence against code injection."""
    client, _ = web_app
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT_URI, "state": "s",
        "scope": "openid"})
    location = query_of(response.headers["Location"])
    assert response.status_code == 303 and location["error"] == "invalid_request" and "code" not in location


def test_a_code_injected_into_a_confidential_clients_session_is_refused(oauth_client, web_app):
    """The attacker logs in at the web app, keeps the code and plants it in the victim's callback: the
    app redeems it with the victim's verifier, which does not match the attacker's challenge."""
    from tests.test_oauth_flow import basic

    client, secret = web_app
    _, attackers_challenge = pkce_pair()
    victims_verifier, _ = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT_URI, "scope": "openid",
        "code_challenge": attackers_challenge, "code_challenge_method": "S256"})
    injected = query_of(response.headers["Location"])["code"]
    for verifier in (victims_verifier, None):  # None: an app that forgot PKCE in the victim's session
        redeemed = oauth_client.post("/token", headers=basic(client.client_id, secret), data={
            "grant_type": "authorization_code", "code": injected, "redirect_uri": REDIRECT_URI,
            **({"code_verifier": verifier} if verifier else {})})
        assert redeemed.status_code == 400 and redeemed.json["error"] == "invalid_grant"
