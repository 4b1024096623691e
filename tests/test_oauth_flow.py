"""The whole flow an app developer relies on: code + PKCE, refresh, revoke, introspect, client_credentials.

Every issued access token is decrypted and verified with jwcrypto, not the library that issued it.
"""

from __future__ import annotations

import base64
import json

import pytest
from jwcrypto.jwe import InvalidJWEData

from tests.conftest import API, OTHER_API, REDIRECT_URI
from tests.oauth_helpers import b64json, open_access_token, pkce_pair, query_of

# The whole module runs twice: /token through its fast path, then through Flask; answers compared.
pytestmark = pytest.mark.usefixtures("token_path")


def authorize(client, app_client, challenge, **extra):
    params = {"response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
              "state": "st-123", "code_challenge": challenge, "code_challenge_method": "S256",
              "scope": "openid records:write", "nonce": "n-1", **extra}
    return client.get("/authorize", query_string={k: v for k, v in params.items() if v is not None})


def exchange(client, app_client, code, verifier, **extra):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": app_client.client_id, "code_verifier": verifier, **extra}
    return client.post("/token", data={k: v for k, v in form.items() if v is not None})


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture
def jwks(oauth_client):
    return oauth_client.get("/.well-known/jwks.json").json


def login(oauth_client, public_app, **extra):
    verifier, challenge = pkce_pair()
    response = authorize(oauth_client, public_app, challenge, **extra)
    assert response.status_code == 303, response.get_data(as_text=True)
    params = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT_URI + "?")
    return params, verifier


def test_code_flow_with_pkce_issues_nested_tokens_readable_only_by_the_audience(
        oauth_client, public_app, audience_keys, jwks, services, broker, settings):
    params, verifier = login(oauth_client, public_app)
    assert params["state"] == "st-123" and params["iss"] == settings.issuer  # RFC 9207
    response = exchange(oauth_client, public_app, params["code"], verifier)
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["scope"] == "openid records:write" and body["refresh_token"] and body["id_token"]

    jwe_header, jws_header, claims = open_access_token(body["access_token"], audience_keys[API], jwks)
    assert jwe_header == {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT",
                          "kid": jwe_header["kid"], "ref": jwe_header["ref"]} and jwe_header["kid"]
    assert jws_header["alg"] == "RS256" and jws_header["typ"] == "at+jwt"
    pseudonym = services.vault.pseudonymise(broker.email).identity.pseudonym
    # the service's sealed reference names the signing key and nothing of the person or the token in clear
    signing_kid, sealed = jwe_header["ref"].split(".")
    assert signing_kid == jws_header["kid"]
    opaque = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    for clear in (pseudonym, claims["sub"], claims["jti"], public_app.client_id, API, "openid"):
        assert clear not in json.dumps(jwe_header) and clear.encode() not in opaque
    subjects = services.oauth.subjects  # new audiences and clients see pairwise subjects of their sector
    assert claims["sub"] == subjects.subject_for(pseudonym, audience=API) != pseudonym
    assert claims["aud"] == API and claims["iss"] == settings.issuer
    assert claims["client_id"] == public_app.client_id and claims["scope"] == "openid records:write"
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"]
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"}

    id_claims = b64json(body["id_token"].split(".")[1])
    assert id_claims["sub"] == subjects.subject_for(pseudonym, client=public_app) != pseudonym
    assert id_claims["aud"] == public_app.client_id
    assert id_claims["nonce"] == "n-1" and "auth_time" in id_claims
    for token in (body["access_token"], body["id_token"]):
        assert "person" not in token and "example.org" not in base64.urlsafe_b64decode(
            body["id_token"].split(".")[1] + "==").decode()


def test_a_token_for_audience_a_cannot_be_read_by_audience_b(oauth_client, public_app, audience_keys, jwks):
    params, verifier = login(oauth_client, public_app)
    token = exchange(oauth_client, public_app, params["code"], verifier).json["access_token"]
    with pytest.raises(InvalidJWEData):  # jwcrypto: no key of ours opens it
        open_access_token(token, audience_keys[OTHER_API], jwks)


def test_refresh_rotates_and_revoke_ends_the_session(oauth_client, public_app, audience_keys, jwks, service_client):
    params, verifier = login(oauth_client, public_app)
    first = exchange(oauth_client, public_app, params["code"], verifier).json
    refreshed = oauth_client.post("/token", data={"grant_type": "refresh_token", "client_id": public_app.client_id,
                                                  "refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.json
    second = refreshed.json
    assert second["refresh_token"] != first["refresh_token"] and "id_token" not in second
    open_access_token(second["access_token"], audience_keys[API], jwks)

    revoked = oauth_client.post("/revoke", data={"client_id": public_app.client_id, "token": second["refresh_token"]})
    assert revoked.status_code == 200
    again = oauth_client.post("/token", data={"grant_type": "refresh_token", "client_id": public_app.client_id,
                                              "refresh_token": second["refresh_token"]})
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"

    rs, secret = service_client
    for token in (second["access_token"], first["access_token"]):
        status = oauth_client.post("/introspect", data={"token": token}, headers=basic(rs.client_id, secret))
        assert status.json == {"active": False}


def test_introspection_describes_live_access_tokens_to_the_audience(oauth_client, public_app, service_client):
    params, verifier = login(oauth_client, public_app)
    tokens = exchange(oauth_client, public_app, params["code"], verifier).json
    rs, secret = service_client
    answer = oauth_client.post("/introspect", data={"token": tokens["access_token"]},
                               headers=basic(rs.client_id, secret)).json
    assert answer["active"] is True and answer["token_type"] == "access_token"
    assert answer["client_id"] == public_app.client_id and answer["aud"] == API
    refresh = oauth_client.post("/introspect", data={"token": tokens["refresh_token"]},
                                headers=basic(rs.client_id, secret)).json
    assert refresh == {"active": False}  # a refresh token only to the client it was issued to
    assert oauth_client.post("/introspect", data={"token": "nonsense"},
                             headers=basic(rs.client_id, secret)).json == {"active": False}


def test_client_credentials_token_has_the_client_as_subject(oauth_client, service_client, audience_keys, jwks):
    rs, secret = service_client
    response = oauth_client.post("/token", data={"grant_type": "client_credentials", "resource": OTHER_API,
                                                 "scope": "records:read"}, headers=basic(rs.client_id, secret))
    assert response.status_code == 200, response.json
    assert "refresh_token" not in response.json
    _, _, claims = open_access_token(response.json["access_token"], audience_keys[OTHER_API], jwks)
    assert claims["sub"] == rs.client_id == claims["client_id"] and claims["aud"] == OTHER_API
    assert claims["scope"] == "records:read"


def test_client_credentials_with_secret_in_the_body(oauth_client, service_client):
    rs, secret = service_client
    response = oauth_client.post("/token", data={"grant_type": "client_credentials", "resource": API,
                                                 "client_id": rs.client_id, "client_secret": secret})
    assert response.status_code == 200
    assert "scope" not in response.json  # none requested, none granted


def test_metadata_advertises_everything(oauth_client, settings):
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        meta = oauth_client.get(path).json
        assert meta["issuer"] == settings.issuer
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["response_types_supported"] == ["code"]
        assert meta["authorization_response_iss_parameter_supported"] is True
        assert "password" not in meta["grant_types_supported"]
        for endpoint in ("authorization_endpoint", "token_endpoint", "revocation_endpoint",
                         "introspection_endpoint", "jwks_uri"):
            assert meta[endpoint].startswith(settings.issuer)


def test_changes_to_clients_apply_without_restart(oauth_client, oauth, service_client, monkeypatch):
    rs, secret = service_client
    ok = oauth_client.post("/token", data={"grant_type": "client_credentials", "resource": API},
                           headers=basic(rs.client_id, secret))
    assert ok.status_code == 200
    oauth.clients.remove(rs.client_id)
    refused = oauth_client.post("/token", data={"grant_type": "client_credentials", "resource": API},
                                headers=basic(rs.client_id, secret))
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
