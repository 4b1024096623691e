"""identity.verify against tokens issued by the real service (Flask test client, no sockets):
discovery → JWKS → verify; the ID and refresh tokens it issues are refused; introspection sees a
revocation; issuer signing-key and audience-key rotations cause no failed verification."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify

from identity.keys import rotate_signing_keys
from identity.oauth.audiences import parse_encryption_key
from identity.verify import (
    ClientCredentials,
    TokenExpired,
    TokenInactive,
    TokenVerifier,
    UnencryptedToken,
    UnknownKey,
    MalformedToken,
)
from identity.verify.flask import current_token, init_app, require_token
from tests.conftest import API, OTHER_API
from tests.oauth_helpers import AudienceKeys
from tests.test_oauth_flow import basic, exchange, login

from .verify_support import FlaskClientFetcher


@pytest.fixture
def fetcher(oauth_client, settings) -> FlaskClientFetcher:
    return FlaskClientFetcher(oauth_client, settings.issuer)


def verifier_for(audience: AudienceKeys, settings, fetcher, clock, **options) -> TokenVerifier:
    return TokenVerifier(issuer=settings.issuer, audience=audience.uri, decryption_keys=[audience.private_key],
                         fetcher=fetcher, clock=clock, **options)


def client_credentials(oauth_client, service_client, resource: str = API, scope: str | None = "records:read") -> str:
    rs, secret = service_client
    form = {"grant_type": "client_credentials", "resource": resource}
    if scope:
        form["scope"] = scope
    response = oauth_client.post("/token", data=form, headers=basic(rs.client_id, secret))
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def test_client_credentials_token_verifies_via_discovery(
        oauth_client, service_client, audience_keys, settings, fetcher, clock):
    verifier = verifier_for(audience_keys[API], settings, fetcher, clock)
    result = verifier.verify(client_credentials(oauth_client, service_client))
    rs, _ = service_client
    assert result.is_client_token and result.subject == rs.client_id == result.client_id
    assert result.scopes == {"records:read"} and result.audience == (API,) and result.issuer == settings.issuer
    assert [url for _, url in fetcher.calls] == [
        f"{settings.issuer}/.well-known/openid-configuration", f"{settings.issuer}/.well-known/jwks.json"]


def test_token_without_scope_verifies_with_no_scopes(
        oauth_client, service_client, audience_keys, settings, fetcher, clock):
    verifier = verifier_for(audience_keys[API], settings, fetcher, clock)
    assert verifier.verify(client_credentials(oauth_client, service_client, scope=None)).scopes == frozenset()


def test_code_flow_token_carries_the_pseudonym_and_nothing_personal(
        oauth_client, public_app, audience_keys, settings, fetcher, clock, services, broker):
    params, code_verifier = login(oauth_client, public_app)
    body = exchange(oauth_client, public_app, params["code"], code_verifier).json
    verifier = verifier_for(audience_keys[API], settings, fetcher, clock)
    result = verifier.verify(body["access_token"])
    pseudonym = services.vault.pseudonymise(broker.email).identity.pseudonym
    assert result.pseudonym == services.oauth.subjects.subject_for(pseudonym, audience=API) != pseudonym
    assert not result.is_client_token and result.client_id == public_app.client_id
    assert "@" not in repr(dict(result.claims))
    # the other tokens of the same response are not access tokens
    with pytest.raises(UnencryptedToken):
        verifier.verify(body["id_token"])
    with pytest.raises(MalformedToken):
        verifier.verify(body["refresh_token"])


def test_token_for_another_audience_is_refused(oauth_client, service_client, audience_keys, settings, fetcher, clock):
    verifier = verifier_for(audience_keys[API], settings, fetcher, clock)
    with pytest.raises(UnknownKey):
        verifier.verify(client_credentials(oauth_client, service_client, resource=OTHER_API))


def test_issued_token_expires(oauth_client, service_client, audience_keys, settings, fetcher, clock):
    verifier = verifier_for(audience_keys[API], settings, fetcher, clock, leeway=5)
    token = client_credentials(oauth_client, service_client)
    verifier.verify(token)
    clock.advance(settings.access_token_ttl + 5)
    with pytest.raises(TokenExpired):
        verifier.verify(token)


def test_introspection_sees_a_revocation_at_once(oauth_client, service_client, audience_keys, settings, fetcher, clock):
    rs, secret = service_client
    verifier = verifier_for(audience_keys[API], settings, fetcher, clock,
                            introspection=ClientCredentials(rs.client_id, secret))
    token = client_credentials(oauth_client, service_client)
    assert verifier.verify(token, introspect=True).subject == rs.client_id
    revoked = oauth_client.post("/revoke", data={"token": token}, headers=basic(rs.client_id, secret))
    assert revoked.status_code == 200
    with pytest.raises(TokenInactive):
        verifier.verify(token, introspect=True)
    assert verifier.verify(token).subject == rs.client_id  # local verification cannot know


def test_issuer_signing_key_rotation_causes_no_failed_verification(
        oauth_client, oauth_app, service_client, audience_keys, settings, fetcher, clock, keys_dir):
    verifier = verifier_for(audience_keys[API], settings, fetcher, clock, monotonic=clock)
    keyring = oauth_app.extensions["identity"].keyring

    def rotate() -> None:
        rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=3600, now=clock.now)
        keyring.reload()

    first = client_credentials(oauth_client, service_client)
    verifier.verify(first)
    rotate()  # publishes a "next" key; the active key still signs
    clock.advance(301)  # one JWKS max-age (a real rotation period is far longer)
    second = client_credentials(oauth_client, service_client)
    assert verifier.verify(second).signing_kid == verifier.verify(first).signing_kid
    rotate()  # "next" starts signing, the old key is retired but still published
    third = client_credentials(oauth_client, service_client)
    assert verifier.verify(third).signing_kid != verifier.verify(second).signing_kid
    jwks_fetches = [url for _, url in fetcher.calls if url.endswith("/jwks.json")]
    assert len(jwks_fetches) == 2  # the first load and the TTL refresh: no unknown-kid miss


def test_audience_key_rotation_causes_no_failed_verification(
        oauth_client, oauth, service_client, audience_keys, settings, fetcher, clock):
    old = audience_keys[API]
    new = AudienceKeys(API, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    # 1. the downstream service deploys with both private keys (new first)
    verifier = TokenVerifier(issuer=settings.issuer, audience=API, fetcher=fetcher, clock=clock,
                             decryption_keys=[new.private_key, old.private_key])
    in_flight = client_credentials(oauth_client, service_client)
    # 2. the operator switches the audience to the new public key at the issuer
    oauth.audiences.update_key(API, key=parse_encryption_key(new.public_pem), jwks_uri=None)
    fresh = client_credentials(oauth_client, service_client)
    assert verifier.verify(in_flight).decryption_kid != verifier.verify(fresh).decryption_kid
    # 3. after the longest access-token lifetime the old key is removed downstream
    clock.advance(settings.access_token_ttl + 60)
    after = TokenVerifier(issuer=settings.issuer, audience=API, fetcher=fetcher, clock=clock,
                          decryption_keys=[new.private_key])
    assert after.verify(client_credentials(oauth_client, service_client)).subject
    with pytest.raises((UnknownKey, TokenExpired)):
        after.verify(in_flight)


def test_audience_key_rotation_without_a_restart_and_the_registration_lists_both(
        oauth_client, oauth, service_client, audience_keys, settings, fetcher, clock, tmp_path):
    """One running verifier reading its key directory: the new key is added, the issuer switched, the old key
    deleted after the overlap; not one token fails, and the registration lists both keys meanwhile."""
    from identity.verify import DecryptionKeyDirectory, generate_audience_key
    from identity.verify.keygen import AudienceKeyFiles

    keys = tmp_path / "downstream-keys"
    first: AudienceKeyFiles = generate_audience_key(keys, bits=2048)
    oauth.audiences.update_key(API, key=parse_encryption_key(first.public_key.read_bytes()), jwks_uri=None)
    moment = [0.0]
    verifier = TokenVerifier(issuer=settings.issuer, audience=API, fetcher=fetcher, clock=clock,
                             decryption_keys=DecryptionKeyDirectory(keys, reload_interval=5,
                                                                    monotonic=lambda: moment[0]))
    in_flight = client_credentials(oauth_client, service_client)
    assert verifier.verify(in_flight).decryption_kid == first.kid
    second = generate_audience_key(keys, bits=2048)  # 1. the new key next to the old one
    moment[0] += 5
    assert verifier.decryption_kids == {first.kid, second.kid}
    record = oauth.audiences.update_key(API, key=parse_encryption_key(second.public_key.read_bytes()),
                                        jwks_uri=None)  # 2. the issuer switches
    assert record.kids == [second.kid, first.kid]
    fresh = client_credentials(oauth_client, service_client)
    assert verifier.verify(fresh).decryption_kid == second.kid
    assert verifier.verify(in_flight).decryption_kid == first.kid  # still in its lifetime: verifies
    clock.advance(settings.access_token_ttl + 60)  # 3. the overlap is over: the old key goes
    first.private_key.unlink()
    moment[0] += 5
    assert verifier.verify(client_credentials(oauth_client, service_client)).decryption_kid == second.kid
    assert verifier.decryption_kids == {second.kid}


def test_downstream_flask_route_accepts_real_tokens_and_refuses_scope_gaps(
        oauth_client, service_client, audience_keys, settings, fetcher, clock):
    downstream = Flask("downstream")
    init_app(downstream, verifier_for(audience_keys[API], settings, fetcher, clock), realm="records")

    @downstream.get("/records")
    @require_token(scope="records:read")
    def records():
        return jsonify(sub=current_token().subject)

    @downstream.post("/records")
    @require_token(scope="records:write")
    def add_record():
        return jsonify(ok=True)

    http = downstream.test_client()
    token = client_credentials(oauth_client, service_client)
    rs, _ = service_client
    assert http.get("/records", headers={"Authorization": f"Bearer {token}"}).json == {"sub": rs.client_id}
    refused = http.post("/records", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403 and 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
