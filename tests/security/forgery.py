"""Building forged JOSE objects byte by byte, so that exactly one thing is wrong in each.

Libraries refuse to produce most attacks (duplicate members, non-UTF-8 headers, ``alg`` values they
do not implement), so the JWE here is assembled by hand from ``cryptography`` primitives: a
correctly RSA-OAEP-256-wrapped key and AES-256-GCM over the exact protected-header bytes given. A
forged header therefore survives decryption, and only the header check under test can refuse it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from identity.verify import thumbprint
from tests.verify_support import b64, with_overrides as merged



def json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


# -- signatures ------------------------------------------------------------------------------------

Signer = Callable[[bytes], bytes]


def rs(key: rsa.RSAPrivateKey, digest: hashes.HashAlgorithm = hashes.SHA256()) -> Signer:
    return lambda data: key.sign(data, padding.PKCS1v15(), digest)


def ps256(key: rsa.RSAPrivateKey) -> Signer:
    return lambda data: key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                                 hashes.SHA256())


def es256(key: ec.EllipticCurvePrivateKey) -> Signer:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def hs256_with_public_pem(public_key: rsa.RSAPublicKey) -> Signer:
    """The RS→HS key-confusion attack: HMAC keyed with the issuer's public key as published."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return lambda data: hmac.new(pem, data, hashlib.sha256).digest()


def unsigned(_: bytes) -> bytes:
    return b""


def jws(header: Mapping[str, Any] | bytes, claims: Mapping[str, Any] | bytes, sign: Signer) -> str:
    """A compact JWS over exactly these header and payload bytes."""
    head = header if isinstance(header, bytes) else json_bytes(header)
    body = claims if isinstance(claims, bytes) else json_bytes(claims)
    signing_input = f"{b64(head)}.{b64(body)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64(sign(signing_input))}"


# -- encryption ------------------------------------------------------------------------------------

def jwe(header: Mapping[str, Any] | bytes, plaintext: str | bytes, recipient: rsa.RSAPublicKey) -> str:
    """A compact JWE: CEK wrapped with RSA-OAEP-256, content with A256GCM, AAD = the header given."""
    protected = b64(header if isinstance(header, bytes) else json_bytes(header))
    cek, iv = os.urandom(32), os.urandom(12)
    wrapped = recipient.encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                                  label=None))
    data = plaintext.encode("ascii") if isinstance(plaintext, str) else plaintext
    sealed = AESGCM(cek).encrypt(iv, data, protected.encode("ascii"))
    return ".".join([protected, b64(wrapped), b64(iv), b64(sealed[:-16]), b64(sealed[-16:])])


def flip(token: str, segment: int) -> str:
    """Change one character in the middle of a segment (a tampered IV, key, ciphertext, tag…)."""
    parts = token.split(".")
    raw = list(parts[segment])
    middle = len(raw) // 2
    raw[middle] = "A" if raw[middle] != "A" else "B"
    parts[segment] = "".join(raw)
    return ".".join(parts)


@dataclass
class Forger:
    """Tokens for one audience key from one issuer key, with any single part changed."""

    issuer: str
    audience: str
    audience_key: rsa.RSAPublicKey
    signing_key: rsa.RSAPrivateKey
    now: int
    subject: str = "mfrggzdfmztwq2lknnwg23tpoa"
    client_id: str = "app"
    scope: str = "identity:self"
    signing_kid: str = field(init=False)
    audience_kid: str = field(init=False)

    def __post_init__(self) -> None:
        self.signing_kid = thumbprint(self.signing_key)
        self.audience_kid = thumbprint(self.audience_key)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return merged({"iss": self.issuer, "sub": self.subject, "aud": self.audience, "exp": self.now + 600,
                       "iat": self.now, "jti": b64(os.urandom(12)), "client_id": self.client_id,
                       "scope": self.scope}, overrides)

    def jws_header(self, **overrides: Any) -> dict[str, Any]:
        return merged({"alg": "RS256", "typ": "at+jwt", "kid": self.signing_kid}, overrides)

    def jwe_header(self, **overrides: Any) -> dict[str, Any]:
        return merged({"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": self.audience_kid}, overrides)

    def inner(self, *, header: Mapping[str, Any] | bytes | None = None, claims: Mapping[str, Any] | bytes | None = None,
              sign: Signer | None = None) -> str:
        return jws(self.jws_header() if header is None else header, self.claims() if claims is None else claims,
                   sign or rs(self.signing_key))

    def wrap(self, inner: str | bytes, *, header: Mapping[str, Any] | bytes | None = None,
             to: rsa.RSAPublicKey | None = None) -> str:
        return jwe(self.jwe_header() if header is None else header, inner, to or self.audience_key)

    def token(self, **claims: Any) -> str:
        return self.wrap(self.inner(claims=self.claims(**claims)))
