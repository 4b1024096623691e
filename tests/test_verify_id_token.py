"""``identity.verify.IdTokenVerifier``: an app checks its ID token (OIDC Core §3.1.3.7).

The good token is one the service's own ``TokenMinter`` issued; each attack breaks one thing.
"""

from __future__ import annotations

import time

import jwt
import pytest

from identity.keys import Keyring
from identity.tokens import TokenMinter
from identity.verify import (
    BadSignature, IdTokenVerifier, MalformedToken, MissingClaim, TokenExpired, TokenNotYetValid, UnknownKey,
    UnsupportedToken, WrongAudience, WrongIssuer, WrongNonce,
)
from tests.verify_support import JWKS_URI, FakeFetcher, hs256_with_public_pem, raw_jws, rsa_key

ISSUER = "https://id.example.test"
CLIENT = "app-client-id"
NOW = 1_800_000_000.0


@pytest.fixture
def keyring(keys_dir):
    return Keyring(keys_dir, passphrase=None)


@pytest.fixture
def minter(keyring):
    return TokenMinter(keyring, issuer=ISSUER, access_token_ttl=600, id_token_ttl=600)


@pytest.fixture
def verifier(keyring):
    fetcher = FakeFetcher()
    fetcher.serve_json(JWKS_URI, keyring.jwks())
    return IdTokenVerifier(issuer=ISSUER, client_id=CLIENT, jwks_uri=JWKS_URI, fetcher=fetcher, clock=lambda: NOW)


def id_token(minter, **overrides) -> str:
    kwargs = {"subject": "mfrggzdfmztwq2lknnwg23tpoa", "client_id": CLIENT, "nonce": "n-1",
              "auth_time": int(NOW) - 5, "now": NOW, **overrides}
    return minter.id_token(**kwargs)


def signed(keyring, claims: dict, *, headers: dict | None = None, key=None) -> str:
    active = keyring.active_signing_key()
    return jwt.encode(claims, key or active.private_key, algorithm="RS256",
                      headers={"typ": "JWT", "kid": active.kid, **(headers or {})})


def base_claims(**changes) -> dict:
    return {"iss": ISSUER, "sub": "p", "aud": CLIENT, "exp": int(NOW) + 600, "iat": int(NOW), **changes}


def test_the_services_own_id_token_verifies_with_its_nonce(verifier, minter):
    verified = verifier.verify(id_token(minter), nonce="n-1")
    assert verified.subject == "mfrggzdfmztwq2lknnwg23tpoa" and verified.audience == (CLIENT,)
    assert verified.nonce == "n-1" and verified.auth_time == int(NOW) - 5 and verified.issuer == ISSUER
    assert verifier.verify(id_token(minter, nonce=None)).nonce is None  # no nonce sent, none expected


@pytest.mark.parametrize("overrides, nonce, error", [
    ({"nonce": "other"}, "n-1", WrongNonce),
    ({"nonce": None}, "n-1", WrongNonce),
    ({"client_id": "another-app"}, None, WrongAudience),
    ({"now": NOW - 700}, None, TokenExpired),
    ({"now": NOW + 120}, None, TokenNotYetValid),
])
def test_a_token_the_app_must_not_accept_is_refused(verifier, minter, overrides, nonce, error):
    with pytest.raises(error):
        verifier.verify(id_token(minter, **overrides), nonce=nonce)


def test_forged_and_foreign_tokens_are_refused(verifier, keyring):
    active = keyring.active_signing_key()
    cases = [
        (signed(keyring, base_claims(iss="https://evil.example")), WrongIssuer),
        (signed(keyring, base_claims(), key=rsa_key("stranger")), BadSignature),
        (signed(keyring, base_claims(), headers={"typ": "at+jwt"}), UnsupportedToken),
        (signed(keyring, base_claims(), headers={"kid": "made-up"}), UnknownKey),
        (signed(keyring, base_claims(aud=[CLIENT, "other"])), WrongAudience),  # several audiences, no azp
        (signed(keyring, {k: v for k, v in base_claims().items() if k != "sub"}), MissingClaim),
        (raw_jws({"alg": "HS256", "typ": "JWT", "kid": active.kid}, base_claims(),
                 hs256_with_public_pem(active.public_key)), UnsupportedToken),
        (raw_jws({"alg": "none", "typ": "JWT", "kid": active.kid}, base_claims(), lambda data: b""), UnsupportedToken),
        ("a.b", MalformedToken),
        ("x" * 9000, MalformedToken),
    ]
    for token, error in cases:
        with pytest.raises(error):
            verifier.verify(token)
    assert verifier.verify(signed(keyring, base_claims(aud=[CLIENT, "other"], azp=CLIENT))).audience == (CLIENT, "other")


@pytest.mark.parametrize("junk", ["\ud800", "é", " ", "\x00"])
def test_a_token_with_characters_outside_base64url_is_malformed(verifier, minter, junk):
    """A lone surrogate (JSON may carry "\\ud800") cannot even be encoded: MalformedToken, not UnicodeEncodeError."""
    header, payload, signature = id_token(minter).split(".")
    with pytest.raises(MalformedToken):
        verifier.verify(f"{header}.{payload}{junk}.{signature}")
    with pytest.raises(WrongNonce):  # nor from a nonce the app passes in
        verifier.verify(id_token(minter), nonce=junk)


def test_the_keys_come_from_discovery_when_no_jwks_uri_is_given(keyring, minter):
    fetcher = FakeFetcher()
    fetcher.serve_json(f"{ISSUER}/.well-known/openid-configuration", {"issuer": ISSUER, "jwks_uri": JWKS_URI})
    fetcher.serve_json(JWKS_URI, keyring.jwks())
    verifier = IdTokenVerifier(issuer=ISSUER, client_id=CLIENT, fetcher=fetcher, clock=time.time)
    assert verifier.verify(id_token(minter, now=time.time())).subject
    assert fetcher.urls() == [f"{ISSUER}/.well-known/openid-configuration", JWKS_URI]
