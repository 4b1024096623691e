"""Helpers for OAuth tests: a stand-in login broker, PKCE pairs, independent token checking (jwcrypto)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, redirect
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws
from werkzeug.wrappers import Response as BaseResponse

from identity.oauth.authorize import ErrorPage, PendingAuthorization


class DirectLoginBroker:
    """Stands in for the upstream IdP: the person 'logs in' as ``email`` at once.

    It goes through ``SignIns.complete``, hence through the vault's ``pseudonymise``.
    """

    def __init__(self) -> None:
        self.email = "person@example.org"
        self.app: Flask | None = None

    def begin(self, pending: PendingAuthorization) -> BaseResponse:
        assert self.app is not None, "the oauth_app fixture sets the broker's app"
        signins = self.app.extensions["identity"].signins
        try:
            return redirect(signins.complete(pending.pending_id, self.email), code=303)
        except ErrorPage as err:
            return Response(err.message, status=err.status)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class AudienceKeys:
    uri: str
    private_key: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def b64json(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def open_access_token(token: str, audience: AudienceKeys, jwks: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Decrypt and verify with jwcrypto (not the issuing library): (JWE header, JWS header, claims)."""
    outer = jc_jwe.JWE()
    outer.deserialize(token, key=jc_jwk.JWK.from_pem(audience.private_pem))
    jwe_header = json.loads(outer.objects["protected"])
    inner_compact = outer.payload.decode()
    jws_header = b64json(inner_compact.split(".")[0])
    keyset = jc_jwk.JWKSet.from_json(json.dumps(jwks))
    signed = jc_jws.JWS()
    signed.deserialize(inner_compact)
    signed.verify(keyset.get_key(jws_header["kid"]), alg="RS256")
    return jwe_header, jws_header, json.loads(signed.payload)
