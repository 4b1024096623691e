"""identity.verify: the happy path and every refusal the access-token contract implies."""

from __future__ import annotations

import dataclasses
import secrets

import jwt
import pytest
from joserfc.jwk import OctKey, RSAKey

from identity.verify import (
    AccessToken,
    BadSignature,
    ClaimError,
    DecryptionFailed,
    InsufficientScope,
    InvalidToken,
    MalformedToken,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
    TokenVerifier,
    UnencryptedToken,
    UnknownKey,
    UnsupportedToken,
    VerificationError,
    WrongAudience,
    WrongIssuer,
)

from .verify_support import (
    AUDIENCE,
    CLIENT_ID,
    DROP,
    ISSUER,
    PSEUDONYM,
    TokenFactory,
    b64json,
    hs256_with_public_pem,
    make_verifier,
    raw_jws,
    rsa_key,
)


@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def verifier(factory: TokenFactory) -> TokenVerifier:
    return make_verifier(factory)[0]


def refused(verifier: TokenVerifier, token: object, kind: type[VerificationError] = InvalidToken) -> InvalidToken:
    with pytest.raises(kind) as caught:
        verifier.verify(token)
    assert isinstance(caught.value, InvalidToken)
    return caught.value


def refused_claim(verifier: TokenVerifier, token: object, kind: type[ClaimError]) -> ClaimError:
    """``refused``, by a claim's check: the error names the claim."""
    error = refused(verifier, token, kind)
    assert isinstance(error, ClaimError)
    return error


# -- accepted -------------------------------------------------------------------------------------


def test_contract_token_verifies_to_typed_frozen_claims(factory: TokenFactory, verifier: TokenVerifier):
    result = verifier.verify(factory.token())
    assert isinstance(result, AccessToken)
    assert result.pseudonym == result.subject == PSEUDONYM
    assert result.client_id == CLIENT_ID and not result.is_client_token
    assert result.scopes == {"records:read", "records:write"}
    assert result.issuer == ISSUER and result.audience == (AUDIENCE,)
    assert result.expires_at == int(factory.now) + 600 and result.issued_at == int(factory.now)
    assert result.signing_kid == factory.signing_kid and result.decryption_kid == factory.audience_kid
    assert result.jti.startswith("jti-")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.subject = "someone-else"  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.claims["sub"] = "someone-else"  # type: ignore[index]


def test_scope_is_optional_and_means_no_scope(factory: TokenFactory, verifier: TokenVerifier):
    result = verifier.verify(factory.token(scope=DROP))
    assert result.scopes == frozenset()
    with pytest.raises(InsufficientScope):
        TokenVerifier.require_scope(result, "records:read")
    TokenVerifier.require_scope(result, None)


def test_client_credentials_token_has_client_as_subject(factory: TokenFactory, verifier: TokenVerifier):
    result = verifier.verify(factory.token(sub=CLIENT_ID))
    assert result.is_client_token


def test_audience_list_containing_ours_is_accepted(factory: TokenFactory, verifier: TokenVerifier):
    assert verifier.verify(factory.token(aud=["https://other.example.test", AUDIENCE])).audience[1] == AUDIENCE


def test_application_at_jwt_typ_is_accepted(factory: TokenFactory, verifier: TokenVerifier):
    token = factory.wrap(factory.inner(header={"typ": "application/at+jwt"}))
    assert verifier.verify(token).subject == PSEUDONYM


def test_require_scope(factory: TokenFactory, verifier: TokenVerifier):
    result = verifier.verify(factory.token(scope="a b c"))
    TokenVerifier.require_scope(result, "a c")
    TokenVerifier.require_scope(result, ["a", "b"])
    with pytest.raises(InsufficientScope) as caught:
        TokenVerifier.require_scope(result, "a d")
    assert caught.value.required == {"a", "d"} and caught.value.status_code == 403


# -- claims ---------------------------------------------------------------------------------------


def test_wrong_audience(factory: TokenFactory, verifier: TokenVerifier):
    assert refused_claim(verifier, factory.token(aud="https://other.example.test"), WrongAudience).claim == "aud"
    refused(verifier, factory.token(aud=["https://other.example.test"]), WrongAudience)


def test_token_for_another_audience_key_is_unreadable(factory: TokenFactory, verifier: TokenVerifier):
    other = TokenFactory(audience_key=rsa_key("audience-b"), audience="https://b.example.test")
    refused(verifier, other.token(), UnknownKey)
    # even when it claims our kid, our key cannot open it
    token = other.wrap(other.inner(factory.claims()), header={"kid": factory.audience_kid})
    refused(verifier, token, DecryptionFailed)


def test_wrong_issuer(factory: TokenFactory, verifier: TokenVerifier):
    refused(verifier, factory.token(iss="https://evil.example.test"), WrongIssuer)
    refused(verifier, factory.token(iss=ISSUER + "/"), WrongIssuer)


def test_expired_beyond_leeway(factory: TokenFactory):
    verifier, _, clock = make_verifier(factory, leeway=30)
    token = factory.token()
    clock.advance(600 + 29)
    assert verifier.verify(token).subject == PSEUDONYM  # within the leeway
    clock.advance(1)
    refused(verifier, token, TokenExpired)


def test_expired_when_first_seen(factory: TokenFactory, verifier: TokenVerifier):
    now = int(factory.now)
    refused(verifier, factory.token(exp=now - 31, iat=now - 700), TokenExpired)


def test_not_yet_valid(factory: TokenFactory, verifier: TokenVerifier):
    now = int(factory.now)
    refused(verifier, factory.token(nbf=now + 120), TokenNotYetValid)
    assert verifier.verify(factory.token(nbf=now + 20)).not_before == now + 20  # within the leeway


def test_issued_far_in_the_future(factory: TokenFactory, verifier: TokenVerifier):
    now = int(factory.now)
    error = refused_claim(verifier, factory.token(iat=now + 3600, exp=now + 7200), TokenNotYetValid)
    assert error.claim == "iat"


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"])
def test_missing_required_claim(factory: TokenFactory, verifier: TokenVerifier, claim: str):
    refused(verifier, factory.token(**{claim: DROP}))


def test_missing_exp_is_named(factory: TokenFactory, verifier: TokenVerifier):
    assert refused_claim(verifier, factory.token(exp=DROP), MissingClaim).claim == "exp"


def test_extra_required_claims_are_enforced(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory, required_claims=["auth_time"])
    refused(verifier, factory.token(), MissingClaim)
    assert verifier.verify(factory.token(auth_time=int(factory.now))).claims["auth_time"] == int(factory.now)


@pytest.mark.parametrize("claims", [
    {"exp": "tomorrow"}, {"exp": True}, {"iat": "now"}, {"nbf": [1]}, {"sub": ""}, {"sub": 42},
    {"client_id": ["a"]}, {"jti": 7}, {"scope": ["records:read"]}, {"aud": 5}, {"aud": [AUDIENCE, 5]},
])
def test_malformed_claim_values(factory: TokenFactory, verifier: TokenVerifier, claims: dict):
    refused(verifier, factory.token(**claims))


# -- outer layer: JWE ----------------------------------------------------------------------------


def test_bare_jws_is_refused(factory: TokenFactory, verifier: TokenVerifier):
    refused(verifier, factory.inner(), UnencryptedToken)


def test_refresh_token_presented_as_access_token(verifier: TokenVerifier):
    refused(verifier, secrets.token_urlsafe(32), MalformedToken)


@pytest.mark.parametrize("token", ["", "a.b.c.d.e", "....", "x" * 20000, "abc def", "äöü.a.b.c.d", None, 42, b"a.b"])
def test_garbage_is_refused(verifier: TokenVerifier, token: object):
    refused(verifier, token)


def test_id_token_presented_as_access_token(factory: TokenFactory, verifier: TokenVerifier):
    id_claims = factory.claims(aud=CLIENT_ID, client_id=DROP, scope=DROP, auth_time=int(factory.now), nonce="n")
    id_token = jwt.encode(id_claims, factory.signing_key, algorithm="RS256",
                          headers={"typ": "JWT", "kid": factory.signing_kid})
    refused(verifier, id_token, UnencryptedToken)
    # an ID token shaped like our audience's claims and encrypted to us: still not an access token
    forged = jwt.encode(factory.claims(), factory.signing_key, algorithm="RS256",
                        headers={"typ": "JWT", "kid": factory.signing_kid})
    refused(verifier, factory.wrap(forged), UnsupportedToken)
    untyped = jwt.encode(factory.claims(), factory.signing_key, algorithm="RS256",
                         headers={"kid": factory.signing_kid, "typ": None})
    refused(verifier, factory.wrap(untyped), UnsupportedToken)


@pytest.mark.parametrize("segment", [1, 2, 3, 4])
def test_tampered_segments(factory: TokenFactory, verifier: TokenVerifier, segment: int):
    parts = factory.token().split(".")
    raw = bytearray(parts[segment].encode("ascii"))
    raw[len(raw) // 2] = ord("A") if raw[len(raw) // 2] != ord("A") else ord("B")
    parts[segment] = raw.decode("ascii")
    refused(verifier, ".".join(parts), DecryptionFailed)


def test_tampered_protected_header(factory: TokenFactory, verifier: TokenVerifier):
    token = factory.token()
    refused(verifier, factory.forge_jwe_header(token, cty="jwt"), DecryptionFailed)  # the header is the AAD
    refused(verifier, factory.forge_jwe_header(token, typ="JWT"), DecryptionFailed)


@pytest.mark.parametrize("header,algorithms", [
    ({"alg": "RSA-OAEP"}, ["RSA-OAEP", "A256GCM"]),
    ({"enc": "A128GCM"}, ["RSA-OAEP-256", "A128GCM"]),
    ({"enc": "A256CBC-HS512"}, ["RSA-OAEP-256", "A256CBC-HS512"]),
    ({"zip": "DEF"}, ["RSA-OAEP-256", "A256GCM", "DEF"]),
    ({"cty": "json"}, None),
    ({"cty": DROP}, None),
])
def test_other_jwe_algorithms_compression_or_content_are_refused(
    factory: TokenFactory, verifier: TokenVerifier, header: dict, algorithms: list[str] | None
):
    refused(verifier, factory.wrap(factory.inner(), header=header, algorithms=algorithms), UnsupportedToken)


@pytest.mark.parametrize("header", [
    {"alg": "RSA1_5"}, {"alg": "none"}, {"alg": DROP}, {"enc": DROP}, {"enc": "A256gcm"},
    {"crit": ["exp"], "exp": 1}, {"zip": "DEF"},
])
def test_forged_jwe_headers_are_refused_before_decryption(
    factory: TokenFactory, verifier: TokenVerifier, header: dict
):
    refused(verifier, factory.forge_jwe_header(factory.token(), **header), UnsupportedToken)


def test_direct_symmetric_encryption_is_refused(factory: TokenFactory, verifier: TokenVerifier):
    cek = OctKey.generate_key(256)
    token = factory.wrap(factory.inner(), header={"alg": "dir"}, key=cek, algorithms=["dir", "A256GCM"])
    refused(verifier, token, UnsupportedToken)


def test_missing_or_unknown_jwe_kid(factory: TokenFactory, verifier: TokenVerifier):
    refused(verifier, factory.wrap(factory.inner(), header={"kid": DROP}), UnknownKey)
    refused(verifier, factory.wrap(factory.inner(), header={"kid": "not-ours"}), UnknownKey)
    refused(verifier, factory.forge_jwe_header(factory.token(), kid=7), UnknownKey)
    refused(verifier, factory.forge_jwe_header(factory.token(), kid="k" * 500), UnknownKey)


def test_jwe_embedded_key_headers_are_ignored_and_never_fetched(factory: TokenFactory):
    verifier, fetcher, _ = make_verifier(factory)
    attacker = RSAKey.import_key(rsa_key("attacker").public_key()).as_dict(private=False)
    header = {"jku": "https://evil.example.test/jwks", "x5u": "https://evil.example.test/cert",
              "jwk": attacker}
    assert verifier.verify(factory.wrap(factory.inner(), header=header)).subject == PSEUDONYM
    # the same headers on a token encrypted to the attacker's own key
    token = factory.wrap(factory.inner(), header=header,
                         key=RSAKey.import_key(rsa_key("attacker").public_key()))
    refused(verifier, token, DecryptionFailed)
    assert all("evil" not in url for url in fetcher.urls())


# -- inner layer: JWS ----------------------------------------------------------------------------


def test_alg_none_is_refused(factory: TokenFactory, verifier: TokenVerifier):
    inner = raw_jws({"alg": "none", "typ": "at+jwt", "kid": factory.signing_kid}, factory.claims(), lambda _: b"")
    refused(verifier, factory.wrap(inner), UnsupportedToken)
    refused(verifier, factory.wrap(inner.rsplit(".", 1)[0] + "."), UnsupportedToken)


def test_hs256_keyed_with_the_rsa_public_key_is_refused(factory: TokenFactory, verifier: TokenVerifier):
    inner = raw_jws({"alg": "HS256", "typ": "at+jwt", "kid": factory.signing_kid}, factory.claims(),
                    hs256_with_public_pem(factory.signing_key.public_key()))
    refused(verifier, factory.wrap(inner), UnsupportedToken)


def test_other_signature_algorithms_are_refused(factory: TokenFactory, verifier: TokenVerifier):
    for alg in ("RS512", "PS256"):
        inner = jwt.encode(factory.claims(), factory.signing_key, algorithm=alg,
                           headers={"typ": "at+jwt", "kid": factory.signing_kid})
        refused(verifier, factory.wrap(inner), UnsupportedToken)


def test_signature_by_another_key_is_refused(factory: TokenFactory, verifier: TokenVerifier):
    refused(verifier, factory.wrap(factory.inner(key=rsa_key("attacker"))), BadSignature)


def test_tampered_inner_claims_are_refused(factory: TokenFactory, verifier: TokenVerifier):
    header, _, signature = factory.inner().split(".")
    forged = f"{header}.{b64json(factory.claims(sub='someone-else'))}.{signature}"
    refused(verifier, factory.wrap(forged), BadSignature)


def test_inner_payload_that_is_not_a_jws(factory: TokenFactory, verifier: TokenVerifier):
    refused(verifier, factory.wrap(b'{"sub": "x"}'), MalformedToken)
    refused(verifier, factory.wrap(factory.wrap(factory.inner())), MalformedToken)  # double encryption


def test_inner_crit_is_refused(factory: TokenFactory, verifier: TokenVerifier):
    refused(verifier, factory.wrap(factory.inner(header={"crit": ["exp"], "exp": 1})), UnsupportedToken)


def test_messages_reveal_nothing_about_the_token(factory: TokenFactory, verifier: TokenVerifier):
    now = int(factory.now)
    for token in (factory.token(aud="https://secret-audience.example"), factory.token(exp=now - 100),
                  factory.token(iss="https://secret-issuer.example"), factory.inner(), "opaque-refresh-SECRET"):
        with pytest.raises(VerificationError) as caught:
            verifier.verify(token)
        text = f"{caught.value} {caught.value!r}"
        assert "secret" not in text.lower() and PSEUDONYM not in text and CLIENT_ID not in text
        assert not any(len(part) > 8 and part in text for part in token.split("."))
