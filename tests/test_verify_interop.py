"""The contract, proven with an independent JOSE implementation (jwcrypto) in both directions."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from identity.verify import UnsupportedToken

from .verify_support import PSEUDONYM, TokenFactory, make_verifier


def jc_key(private_key) -> jc_jwk.JWK:
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return jc_jwk.JWK.from_pem(pem)


def jwcrypto_token(factory: TokenFactory, *, enc: str = "A256GCM", typ: str = "at+jwt") -> str:
    signer = jc_jws.JWS(json.dumps(factory.claims()))
    signer.add_signature(jc_key(factory.signing_key), alg="RS256",
                         protected=json.dumps({"alg": "RS256", "typ": typ, "kid": factory.signing_kid}))
    inner = signer.serialize(compact=True)
    audience_public = jc_jwk.JWK.from_json(jc_key(factory.audience_key).export_public())
    header = {"alg": "RSA-OAEP-256", "enc": enc, "cty": "JWT", "kid": factory.audience_kid}
    outer = jc_jwe.JWE(inner.encode(), json.dumps(header))
    outer.add_recipient(audience_public)
    return outer.serialize(compact=True)


def test_token_built_by_jwcrypto_verifies():
    factory = TokenFactory()
    verifier, _, _ = make_verifier(factory)
    assert verifier.verify(jwcrypto_token(factory)).subject == PSEUDONYM


def test_jwcrypto_token_with_another_enc_is_refused():
    factory = TokenFactory()
    verifier, _, _ = make_verifier(factory)
    with pytest.raises(UnsupportedToken):
        verifier.verify(jwcrypto_token(factory, enc="A128CBC-HS256"))


def test_test_helper_tokens_match_the_contract_as_jwcrypto_reads_them():
    factory = TokenFactory()
    outer = jc_jwe.JWE()
    outer.deserialize(factory.token(), key=jc_key(factory.audience_key))
    assert json.loads(outer.objects["protected"]) == {
        "alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": factory.audience_kid}
    inner = jc_jws.JWS()
    inner.deserialize(outer.payload.decode())
    inner.verify(jc_jwk.JWK.from_json(jc_key(factory.signing_key).export_public()), alg="RS256")
    assert inner.jose_header == {"alg": "RS256", "typ": "at+jwt", "kid": factory.signing_kid}
    claims = json.loads(inner.payload)
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"}
