"""The broker against a provider configured as for Auth0, whose answers a test can forge.

Every ID token the broker must refuse (signature, expiry, audience, issuer, nonce, e-mail) ends at the
app as ``access_denied`` with the app's state, never a code; a provider that rotates its keys is
followed; a broken token endpoint or JWKS is ``temporarily_unavailable``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from identity import create_app
from identity.oauth.records import PENDING_AUTHORIZATIONS
from identity.store import StoreUnavailable
from identity.upstream import UpstreamBroker, WsgiTransport
from identity.upstream.transport import UpstreamSession
from identity.web.login import EXTENSION as LOGIN_BROKER
from tests.conftest import REDIRECT_URI
from tests.oauth_helpers import pkce_pair, query_of
from tests.upstream_fixtures import (  # noqa: F401
    UPSTREAM,
    UPSTREAM_CLIENT_ID,
    UPSTREAM_SECRET,
    broker_app,
    broker_browser,
    broker_client,
    register_app_client,
    tampering,
    upstream_config,
    upstream_idp,
)
from tests.upstream_support import Browser, authorization_url, decode_segment, log_in

ISSUER = "https://id.example.test"
EMAIL = "dana@example.org"


def login(browser, client, email: str = EMAIL):
    return log_in(browser, ISSUER, client.client_id, REDIRECT_URI, email)


def assert_refused(result, app, error: str = "access_denied") -> None:
    assert result.page.url.startswith(REDIRECT_URI + "?"), result.page.text
    params = result.params
    assert params["error"] == error and params["state"] == "app-state" and params["iss"] == ISSUER
    assert "code" not in params
    assert app.extensions["identity"].store.count(PENDING_AUTHORIZATIONS, {}) == 0


def claims_edit(**changes: Any) -> Callable[[dict, dict], dict]:
    def edit(header: dict, claims: dict) -> dict:
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims
    return edit


def resigned(tampering, edit: Callable[[dict, dict], dict]) -> Callable[[dict, dict], str]:
    """Change the claims, then sign properly with the provider's own key."""
    return lambda header, claims: tampering.sign(header, edit(header, claims))


def test_login_through_a_configured_provider_works(broker_browser, broker_client, broker_app, tampering):
    result = login(broker_browser, broker_client)
    assert result.params["code"] and result.params["state"] == "app-state"
    assert broker_browser.hops[1].startswith(f"{UPSTREAM}/authorize?")
    assert tampering.count("/.well-known/openid-configuration") == 1 and tampering.count("/token") == 1


def test_session_and_provider_cookies_are_httponly_samesite_lax_and_secure_under_https(broker_browser,
                                                                                       broker_client):
    login(broker_browser, broker_client)
    service = [c for c in broker_browser.set_cookies if c.startswith("__Host-identity_session=")]
    provider = [c for c in broker_browser.set_cookies if c.startswith("devidp_session=")]
    assert service and provider
    assert not [c for c in broker_browser.set_cookies if c.startswith("identity_session=")]
    for cookie in service + provider:
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    # the host prefix (RFC 6265bis): a sibling subdomain cannot plant a session (state marker, CSRF token)
    for cookie in service:
        assert "Path=/" in cookie and "Domain=" not in cookie


def test_the_upstream_authorization_request_uses_state_nonce_and_pkce_s256(broker_browser, broker_client):
    login(broker_browser, broker_client)
    upstream = query_of(broker_browser.hops[1])
    assert upstream["client_id"] == UPSTREAM_CLIENT_ID and upstream["response_type"] == "code"
    assert upstream["scope"] == "openid email" and upstream["code_challenge_method"] == "S256"
    assert len(upstream["state"]) >= 20 and len(upstream["nonce"]) >= 20 and len(upstream["code_challenge"]) == 43
    assert upstream["redirect_uri"] == f"{ISSUER}/login/callback"
    assert upstream["state"] != "app-state"  # the app's state never goes upstream


NOW = int(time.time())
REFUSALS = {  # case: (what the provider's token says, the reason the broker logs)
    "expired": (claims_edit(exp=NOW - 3600, iat=NOW - 3900), "id_token_expired_token"),
    "issued_in_the_future": (claims_edit(iat=NOW + 3600, exp=NOW + 7200), "id_token_invalid_claim"),
    "wrong_audience_with_azp": (claims_edit(aud="someone-else"), "id_token_invalid_claim"),  # Authlib alone: OK
    "extra_untrusted_audience": (claims_edit(aud=[UPSTREAM_CLIENT_ID, "someone-else"]), "id_token_untrusted_audience"),
    "no_audience": (claims_edit(aud=None), "id_token_missing_claim"),
    "wrong_issuer": (claims_edit(iss="https://evil.example.test"), "id_token_invalid_claim"),
    "no_issuer": (claims_edit(iss=None), "id_token_missing_claim"),
    "wrong_nonce": (claims_edit(nonce="not-the-one-we-sent"), "id_token_invalid_claim"),
    "no_nonce": (claims_edit(nonce=None), "id_token_missing_claim"),
    "no_subject": (claims_edit(sub=None), "id_token_missing_claim"),
    "no_expiry": (claims_edit(exp=None), "id_token_missing_claim"),
    "no_email": (claims_edit(email=None), "no_email"),
    "empty_email": (claims_edit(email=""), "no_email"),
    "email_not_verified": (claims_edit(email_verified=False), "email_not_verified"),
    "email_verified_missing": (claims_edit(email_verified=None), "email_not_verified"),
    "email_verified_as_text": (claims_edit(email_verified="true"), "email_not_verified"),
}


def failure_reasons(caplog) -> list[str]:
    return [r.reason for r in caplog.records if r.getMessage() == "upstream login failed"]


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_properly_signed_but_wrong_id_token_is_refused(case, broker_browser, broker_client, broker_app, tampering,
                                                          caplog):
    edit, reason = REFUSALS[case]
    tampering.tamper = resigned(tampering, edit)
    result = login(broker_browser, broker_client)
    assert_refused(result, broker_app)
    assert failure_reasons(caplog) == [reason]
    assert all(EMAIL not in r.getMessage() and EMAIL not in repr(vars(r)) for r in caplog.records)


def test_a_forged_signature_is_refused(broker_browser, broker_client, broker_app, tampering, caplog):
    forger = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    tampering.tamper = lambda header, claims: tampering.sign(header, claims, key=forger)  # the provider's kid
    assert_refused(login(broker_browser, broker_client), broker_app)
    assert failure_reasons(caplog) == ["id_token_bad_signature"]


def test_a_tampered_payload_under_the_original_signature_is_refused(broker_browser, broker_client, broker_app,
                                                                   tampering, caplog):
    def swap_email(header, claims):
        genuine = tampering.sign(header, claims)
        forged = tampering.sign(header, {**claims, "email": "mallory@example.org"})
        return ".".join([genuine.split(".")[0], forged.split(".")[1], genuine.split(".")[2]])
    tampering.tamper = swap_email
    assert_refused(login(broker_browser, broker_client), broker_app)
    assert failure_reasons(caplog) == ["id_token_bad_signature"]


def test_unsigned_and_symmetric_tokens_are_refused(broker_browser, broker_client, broker_app, tampering, caplog):
    secret_key = OctKey.import_key(UPSTREAM_SECRET)  # HS256 "signed" with our own client secret
    tampering.tamper = lambda header, claims: jwt.encode({"alg": "HS256"}, claims, secret_key)
    assert_refused(login(broker_browser, broker_client), broker_app)

    def unsigned(header, claims):
        signed = tampering.sign(header, claims)
        return ".".join([jwt_segment({"alg": "none"}), signed.split(".")[1], ""])
    tampering.tamper = unsigned
    assert_refused(login(broker_browser, broker_client), broker_app)
    assert failure_reasons(caplog) == ["id_token_unsupported_algorithm"] * 2


def jwt_segment(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("reply", [
    (200, b'{"access_token": "x", "token_type": "Bearer"}'),  # no id_token
    (200, b'{"access_token": "x", "token_type": "Bearer", "id_token": "not.a.jwt"}'),
    (400, b'{"error": "invalid_grant"}'),
])
def test_token_endpoint_answers_without_a_usable_id_token_are_refused(reply, broker_browser, broker_client,
                                                                     broker_app, tampering):
    tampering.replies["/token"] = reply
    assert_refused(login(broker_browser, broker_client), broker_app)


@pytest.mark.parametrize("path, reply", [
    ("/token", (502, b"<h1>Bad gateway</h1>")),
    ("/token", (200, b"<html>maintenance</html>")),
    ("/jwks", (503, b"<h1>down</h1>")),
])
def test_a_failing_token_endpoint_or_jwks_is_temporarily_unavailable(path, reply, broker_browser, broker_client,
                                                                     broker_app, tampering):
    tampering.replies[path] = reply
    assert_refused(login(broker_browser, broker_client), broker_app, "temporarily_unavailable")


def test_a_provider_that_rotates_its_signing_keys_is_followed(broker_browser, broker_client, broker_app, tampering,
                                                              upstream_idp):
    first = login(broker_browser, broker_client)
    assert "code" in first.params and tampering.count("/jwks") == 1
    old_kid = upstream_idp.keys.active.kid
    new_key = upstream_idp.keys.rotate()
    assert new_key.kid != old_kid
    second = login(broker_browser, broker_client)
    assert "code" in second.params
    assert tampering.count("/jwks") == 2  # unknown kid → the JWKS was fetched again, once
    third = login(broker_browser, broker_client)
    assert "code" in third.params and tampering.count("/jwks") == 2  # and cached again


def test_a_key_the_provider_withdrew_is_refused_once_the_cached_jwks_is_stale(settings, tampering, upstream_idp,
                                                                              audience_keys):
    broker = UpstreamBroker(upstream_config(settings, jwks_max_age=0),
                            mounts={UPSTREAM + "/": WsgiTransport(tampering, UPSTREAM)})
    app = create_app(settings, login_broker=broker)
    client = register_app_client(app, audience_keys)
    browser = Browser({"id.example.test": app, "upstream.example.test": tampering}, stop_at=REDIRECT_URI)
    withdrawn = upstream_idp.keys.active
    assert "code" in login(browser, client).params
    upstream_idp.keys.rotate(keep_previous=False)
    tampering.tamper = lambda header, claims: tampering.sign({"alg": "ES256"}, claims, key=withdrawn)
    assert_refused(login(browser, client), app)
    app.extensions["identity"].store.close()


def test_same_email_same_pseudonym_through_a_configured_provider(broker_browser, broker_client, broker_app):
    def sub_for(email: str) -> str:
        result = login(broker_browser, broker_client, email)
        response = broker_app.test_client().post("/token", base_url=ISSUER, data={
            "grant_type": "authorization_code", "code": result.params["code"], "redirect_uri": REDIRECT_URI,
            "client_id": broker_client.client_id, "code_verifier": result.verifier})
        return decode_segment(response.json["id_token"])["sub"]

    assert sub_for("erin@example.org") == sub_for("ERIN@example.org") != sub_for("frank@example.org")


def test_refusals_are_logged_with_a_reason_and_never_the_email(broker_browser, broker_client, tampering, caplog):
    caplog.set_level(logging.DEBUG)
    tampering.tamper = resigned(tampering, claims_edit(email_verified=False))
    login(broker_browser, broker_client, "grace@example.org")
    failed = [r for r in caplog.records if r.getMessage() == "upstream login failed"]
    assert [r.reason for r in failed] == ["email_not_verified"]
    assert not [r for r in caplog.records if "grace" in r.getMessage() or "grace" in repr(vars(r))]


def installed_broker(app) -> UpstreamBroker:
    return app.extensions[LOGIN_BROKER]


def test_an_unforeseen_error_at_the_callback_is_a_server_error_for_the_app(broker_browser, broker_client, broker_app,
                                                                          monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(installed_broker(broker_app).client, "fetch_access_token", broken)
    assert_refused(login(broker_browser, broker_client), broker_app, "server_error")
    assert failure_reasons(caplog) == ["unexpected_error"]


def test_an_unforeseen_error_when_starting_is_a_server_error_for_the_app(broker_browser, broker_client, broker_app,
                                                                        monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(installed_broker(broker_app).client, "create_authorization_url", broken)
    verifier, challenge = pkce_pair()
    page = broker_browser.get(authorization_url(ISSUER, broker_client.client_id, REDIRECT_URI, challenge))
    assert page.query["error"] == "server_error" and page.query["state"] == "app-state"


def test_a_store_outage_at_the_callback_is_an_error_page(broker_browser, broker_client, broker_app, monkeypatch):
    def down(*args, **kwargs):
        raise StoreUnavailable("disk gone")
    monkeypatch.setattr(broker_app.extensions["identity"].oauth.authorizer, "complete", down)
    page = login(broker_browser, broker_client).page
    assert page.status == 503 and page.response.mimetype == "text/html" and "disk gone" not in page.text


def test_every_upstream_session_has_a_timeout():
    with pytest.raises(ValueError, match="timeout"):
        UpstreamSession(client_id="c")
    assert UpstreamSession(client_id="c", default_timeout=2.0).default_timeout == 2.0
