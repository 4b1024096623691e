"""/authorize refusals: error pages where the redirect is not verified, OAuth redirects after."""

from __future__ import annotations

import pytest

from tests.conftest import API, OTHER_API, REDIRECT_URI
from tests.oauth_helpers import pkce_pair, query_of


def params_for(app_client, **overrides):
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
              "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def assert_error_page(response):
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


def assert_redirect_error(response, error):
    assert response.status_code == 303, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = query_of(location)
    assert query["error"] == error and query["state"] == "s" and query["iss"]
    assert "code" not in query


def test_unknown_client_gets_an_error_page(oauth_client, public_app):
    assert_error_page(oauth_client.get("/authorize", query_string=params_for(public_app, client_id="nope")))
    assert_error_page(oauth_client.get("/authorize", query_string=params_for(public_app, client_id=None)))


@pytest.mark.parametrize("uri", [
    REDIRECT_URI + "/", "https://APP.example.org/callback", "https://app.example.org/callback/extra",
    REDIRECT_URI + "?x=1", "https://app.example.org@evil.example/callback", "https://evil.app.example.org/callback",
    "http://app.example.org/callback", REDIRECT_URI + "#frag", "https://app.example.org/Callback",
    "https://app.example.org:443/callback", "https://evil.example/callback",
])
def test_redirect_uri_variations_get_an_error_page_and_no_redirect(oauth_client, public_app, uri):
    assert_error_page(oauth_client.get("/authorize", query_string=params_for(public_app, redirect_uri=uri)))


def test_duplicate_client_or_redirect_parameters_get_an_error_page(oauth_client, public_app):
    query = "&".join(f"{k}={v}" for k, v in params_for(public_app).items())
    assert_error_page(oauth_client.get(f"/authorize?{query}&redirect_uri=https://evil.example/cb"))
    assert_error_page(oauth_client.get(f"/authorize?{query}&client_id=other"))


def test_duplicate_other_parameters_are_invalid_request(oauth_client, public_app):
    query = "&".join(f"{k}={v}" for k, v in params_for(public_app).items())
    assert_redirect_error(oauth_client.get(f"/authorize?{query}&scope=openid&scope=openid"), "invalid_request")


@pytest.mark.parametrize("response_type", ["token", "id_token", "code token", None])
def test_only_response_type_code(oauth_client, public_app, response_type):
    response = oauth_client.get("/authorize", query_string=params_for(public_app, response_type=response_type))
    assert_redirect_error(response, "unsupported_response_type")


def test_pkce_is_required_for_public_clients(oauth_client, public_app):
    response = oauth_client.get("/authorize", query_string=params_for(
        public_app, code_challenge=None, code_challenge_method=None))
    assert_redirect_error(response, "invalid_request")


def test_pkce_is_required_for_confidential_clients_too(oauth_client, web_app):
    client, _ = web_app
    without = oauth_client.get("/authorize", query_string=params_for(
        client, code_challenge=None, code_challenge_method=None, scope="openid", nonce="n-1"))
    assert_redirect_error(without, "invalid_request")  # a nonce does not stand in for an unregistered client
    assert "PKCE" in query_of(without.headers["Location"])["error_description"]
    assert "code" in query_of(oauth_client.get("/authorize", query_string=params_for(client)).headers["Location"])


@pytest.fixture
def nonce_app(oauth):
    client, _ = oauth.clients.register(name="OIDC web app", public=False, redirect_uris=[REDIRECT_URI],
                                       grant_types=["authorization_code"], scopes=["openid", "records:read"],
                                       audiences=[API], uses_nonce=True)
    return client


def test_a_client_registered_as_using_nonce_may_skip_pkce_when_it_sends_one(oauth_client, nonce_app):
    response = oauth_client.get("/authorize", query_string=params_for(
        nonce_app, code_challenge=None, code_challenge_method=None, scope="openid", nonce="n-0S6_WzA2Mj"))
    assert response.status_code == 303 and "code" in query_of(response.headers["Location"])


@pytest.mark.parametrize("overrides", [
    {"scope": "openid"}, {"scope": "openid", "nonce": ""}, {"scope": "records:read", "nonce": "n-1"},
], ids=["no nonce", "empty nonce", "nonce without openid (no ID token carries it back)"])
def test_a_client_registered_as_using_nonce_needs_pkce_without_a_usable_nonce(oauth_client, nonce_app, overrides):
    response = oauth_client.get("/authorize", query_string=params_for(
        nonce_app, code_challenge=None, code_challenge_method=None, **overrides))
    assert_redirect_error(response, "invalid_request")


def test_a_client_stored_before_the_nonce_exception_existed_needs_pkce(oauth_client, oauth_app, oauth):
    from identity.oauth.clients import CLIENTS

    oauth_app.extensions["identity"].store.insert(CLIENTS, {  # as an earlier release stored it: no uses_nonce field
        "client_id": "older-web-app", "name": "Older web app", "public": False, "secret_hash": "0" * 64,
        "redirect_uris": [REDIRECT_URI], "grant_types": ["authorization_code"], "scopes": ["openid"],
        "audiences": [API], "created_at": 1})
    older = oauth.clients.get("older-web-app")
    assert older is not None and older.uses_nonce is False
    response = oauth_client.get("/authorize", query_string=params_for(
        older, code_challenge=None, code_challenge_method=None, scope="openid", nonce="n-1"))
    assert_redirect_error(response, "invalid_request")


@pytest.mark.parametrize("method", ["plain", None, "S512", "s256"])
def test_pkce_method_must_be_s256(oauth_client, public_app, method):
    response = oauth_client.get("/authorize", query_string=params_for(public_app, code_challenge_method=method))
    assert_redirect_error(response, "invalid_request")


@pytest.mark.parametrize("challenge", ["short", "x" * 44, "a" * 42 + "!"])
def test_pkce_challenge_must_have_the_s256_shape(oauth_client, public_app, challenge):
    response = oauth_client.get("/authorize", query_string=params_for(public_app, code_challenge=challenge))
    assert_redirect_error(response, "invalid_request")


def test_scope_outside_the_clients_allowance_is_refused(oauth_client, public_app):
    response = oauth_client.get("/authorize", query_string=params_for(public_app, scope="openid admin"))
    assert_redirect_error(response, "invalid_scope")


def test_resource_the_client_may_not_use_is_invalid_target(oauth_client, public_app):
    for resource in (OTHER_API, "https://unknown.example.org"):
        response = oauth_client.get("/authorize", query_string=params_for(public_app, resource=resource))
        assert_redirect_error(response, "invalid_target")


def test_request_objects_and_prompt_none_are_refused(oauth_client, public_app):
    assert_redirect_error(oauth_client.get("/authorize", query_string=params_for(public_app, request="x.y.z")),
                          "request_not_supported")
    assert_redirect_error(oauth_client.get("/authorize", query_string=params_for(public_app, prompt="none")),
                          "login_required")


def test_state_round_trips_and_iss_is_sent(oauth_client, public_app, settings):
    response = oauth_client.get("/authorize", query_string=params_for(public_app, state="a b&c=d", resource=API))
    query = query_of(response.headers["Location"])
    assert query["state"] == "a b&c=d" and query["iss"] == settings.issuer and query["code"]


def test_redirect_uri_may_be_omitted_when_only_one_is_registered(oauth_client, public_app):
    response = oauth_client.get("/authorize", query_string=params_for(public_app, redirect_uri=None))
    assert response.status_code == 303 and "code" in query_of(response.headers["Location"])


def test_loopback_redirect_port_may_vary_for_native_apps(oauth_client, oauth):
    native, _ = oauth.clients.register(name="CLI", public=True, redirect_uris=["http://127.0.0.1/cb"],
                                       grant_types=None, scopes=None, audiences=[API])
    ok = oauth_client.get("/authorize", query_string=params_for(native, redirect_uri="http://127.0.0.1:53123/cb"))
    assert ok.status_code == 303 and ok.headers["Location"].startswith("http://127.0.0.1:53123/cb?")
    for bad in ("http://127.0.0.1:53123/other", "http://localhost:53123/cb", "http://127.0.0.1.evil.example/cb",
                "http://user@127.0.0.1:5/cb", "https://127.0.0.1:53123/cb"):
        assert_error_page(oauth_client.get("/authorize", query_string=params_for(native, redirect_uri=bad)))


def test_a_restricted_identity_gets_access_denied(oauth_client, public_app, services, broker):
    from identity.vault import IDENTITIES

    pseudonym = services.vault.pseudonymise(broker.email).identity.pseudonym
    services.store.update(IDENTITIES, {"pseudonym": pseudonym}, {"status": "restricted"})
    response = oauth_client.get("/authorize", query_string=params_for(public_app))
    assert_redirect_error(response, "access_denied")


def test_a_parked_request_can_be_completed_only_once(oauth, public_app, clock):
    from identity.oauth.authorize import ErrorPage

    request = oauth.authorizer.validate(params_for(public_app))
    pending = oauth.authorizer.park(request)
    oauth.authorizer.complete(pending.pending_id, "once@example.org")
    with pytest.raises(ErrorPage):
        oauth.authorizer.complete(pending.pending_id, "once@example.org")
    late = oauth.authorizer.park(request)
    clock.advance(601)
    with pytest.raises(ErrorPage):
        oauth.authorizer.complete(late.pending_id, "late@example.org")


def test_authorize_errors_never_500_on_odd_input(oauth_client, public_app):
    for query in ("client_id=%00", "client_id=" + "x" * 5000, "response_type=code&client_id[]=x", "%ff%fe=1"):
        assert oauth_client.get("/authorize?" + query).status_code < 500


def test_a_failing_vault_still_answers_the_app_with_an_oauth_error(oauth, public_app, services, monkeypatch):
    from identity.store import StoreUnavailable

    request = oauth.authorizer.validate(params_for(public_app))
    bad_address = oauth.authorizer.complete(oauth.authorizer.park(request).pending_id, "not an address")
    assert query_of(bad_address)["error"] == "access_denied"

    def store_down(email):
        raise StoreUnavailable("down")

    monkeypatch.setattr(oauth.authorizer._vault, "pseudonymise", store_down)
    down = oauth.authorizer.complete(oauth.authorizer.park(request).pending_id, "someone@example.org")
    assert query_of(down)["error"] == "temporarily_unavailable" and query_of(down)["state"] == "s"


def test_a_parked_request_and_a_refused_one_get_the_same_error_redirect(oauth, settings):
    from identity.oauth.authorize import RedirectError

    uri = "https://app.example.org/callback?tenant=a"
    doc = {"redirect_uri": uri, "state": "s&t"}
    url = oauth.authorizer.error_redirect(doc, "access_denied", "no & yes")
    assert url == oauth.authorizer.redirect_for(RedirectError(uri, "access_denied", "no & yes", "s&t"))
    assert url.startswith(uri + "&")
    assert query_of(url) == {"tenant": "a", "error": "access_denied", "error_description": "no & yes", "state": "s&t",
                             "iss": settings.issuer}
    assert "state" not in query_of(oauth.authorizer.error_redirect({"redirect_uri": uri}, "access_denied", "x"))
