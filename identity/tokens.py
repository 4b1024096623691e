"""Token minting: nested access tokens (RS256 JWS inside an RSA-OAEP-256/A256GCM JWE) and ID tokens.

The access token contract (README, "Access token format"):

* outer: compact JWE, protected header ``{"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT",
  "kid": <audience key id>}``, encrypted to the audience's public key;
* inner: compact JWS, header ``{"alg": "RS256", "typ": "at+jwt", "kid": <signing key id>}``, RFC 9068
  claims ``iss, sub, aud, exp, iat, jti, client_id`` and ``scope`` when one was granted.

The compact serialisations are written here with ``cryptography`` directly (RS256 = RSASSA-PKCS1-v1_5
with SHA-256, RFC 7518 §3.3; RSA-OAEP-256 key wrap and A256GCM content encryption, RFC 7518 §4.3 and
§5.3), because this is the token endpoint's hot path: the headers are serialised once per key, and only
the claims, the signature and the encryption are per token. The output is the same JOSE as PyJWT and
joserfc produce (the tests decode it with both, and with jwcrypto). No e-mail or other personal data
ever enters a token.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwe import JWERegistry
from joserfc.jwk import RSAKey

from .keys import Keyring

JWE_ALG, JWE_ENC = "RSA-OAEP-256", "A256GCM"
JWE_REGISTRY = JWERegistry(algorithms=[JWE_ALG, JWE_ENC])
ACCESS_TOKEN_TYPE = "at+jwt"
CEK_BYTES, IV_BYTES = 32, 12  # A256GCM: 256-bit key, 96-bit IV (RFC 7518 §5.3)

_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # what PyJWT and joserfc write
_SORTED_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # PyJWT's JWS header


def b64url(data: bytes) -> bytes:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass(frozen=True)
class EncryptionKey:
    """An audience's public encryption key, parsed once."""

    kid: str
    key: RSAKey

    @cached_property
    def public_key(self) -> RSAPublicKey:
        return self.key.public_key

    @cached_property
    def protected_header(self) -> bytes:
        """BASE64URL(UTF8(JWE Protected Header)) for this key: also the AES-GCM additional data."""
        header = {"alg": JWE_ALG, "enc": JWE_ENC, "cty": "JWT", "kid": self.kid}
        return b64url(_COMPACT_JSON.encode(header).encode("ascii"))


@dataclass(frozen=True)
class AccessToken:
    token: str
    jti: str
    issued_at: int
    expires_at: int


def new_jti() -> str:
    return secrets.token_urlsafe(16)


def encrypt_compact(plaintext: bytes, key: EncryptionKey) -> str:
    """Compact JWE, RSA-OAEP-256 + A256GCM (RFC 7516 §5.1): a fresh CEK and IV for every token."""
    cek, iv = os.urandom(CEK_BYTES), os.urandom(IV_BYTES)
    aad = key.protected_header
    sealed = AESGCM(cek).encrypt(iv, plaintext, aad)  # ciphertext || 16-byte tag
    wrapped = key.public_key.encrypt(cek, _OAEP_SHA256)
    return b".".join((aad, b64url(wrapped), b64url(iv), b64url(sealed[:-16]), b64url(sealed[-16:]))).decode("ascii")


class TokenMinter:
    """Signs and encrypts tokens with the keyring's active signing key."""

    def __init__(self, keyring: Keyring, *, issuer: str, access_token_ttl: int, id_token_ttl: int) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._access_ttl = access_token_ttl
        self._id_ttl = id_token_ttl
        self._headers: dict[tuple[str, str], bytes] = {}

    def _jws_header(self, kid: str, typ: str) -> bytes:
        """BASE64URL of ``{"alg":"RS256","kid":…,"typ":…}`` (sorted keys, as PyJWT writes it), once per key."""
        segment = self._headers.get((kid, typ))
        if segment is None:
            header = {"alg": "RS256", "kid": kid, "typ": typ}
            segment = b64url(_SORTED_COMPACT_JSON.encode(header).encode("ascii")) + b"."
            if len(self._headers) > 64:  # old keys after many rotations
                self._headers.clear()
            self._headers[(kid, typ)] = segment
        return segment

    def _sign(self, claims: dict[str, Any], typ: str) -> bytes:
        """Compact JWS, RS256 (RFC 7515 §7.1, RFC 7518 §3.3)."""
        key = self._keyring.active_signing_key()
        signing_input = self._jws_header(key.kid, typ) + b64url(_COMPACT_JSON.encode(claims).encode("ascii"))
        return signing_input + b"." + b64url(key.private_key.sign(signing_input, _PKCS1V15, _SHA256))

    def access_token(
        self,
        *,
        subject: str,
        client_id: str,
        audience: str,
        encryption_key: EncryptionKey,
        scope: str | None,
        now: float,
    ) -> AccessToken:
        """RFC 9068 claims, signed (RS256, ``typ: at+jwt``), then encrypted to the audience."""
        issued_at = int(now)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "exp": issued_at + self._access_ttl,
            "iat": issued_at,
            "jti": new_jti(),
            "client_id": client_id,
        }
        if scope:
            claims["scope"] = scope
        inner = self._sign(claims, ACCESS_TOKEN_TYPE)
        outer = encrypt_compact(inner, encryption_key)
        return AccessToken(token=outer, jti=claims["jti"], issued_at=issued_at, expires_at=claims["exp"])

    def id_token(
        self, *, subject: str, client_id: str, nonce: str | None, auth_time: int, now: float
    ) -> str:
        """OIDC Core §2 ID token: RS256, ``aud`` = the client, ``sub`` = the pseudonym."""
        issued_at = int(now)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": client_id,
            "exp": issued_at + self._id_ttl,
            "iat": issued_at,
            "auth_time": auth_time,
        }
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims, "JWT").decode("ascii")
