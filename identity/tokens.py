"""Token minting: nested access tokens (RS256 JWS inside an RSA-OAEP-256/A256GCM JWE) and ID tokens.

The access token contract (README, "Access token format"):

* outer: compact JWE, protected header ``{"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT",
  "kid": <audience key id>, "ref": <the service's sealed reference>}``, encrypted to the audience's public
  key; ``ref`` is opaque to everyone but the service (``identity.token_reference``);
* inner: compact JWS, header ``{"alg": "RS256", "typ": "at+jwt", "kid": <signing key id>}``, RFC 9068
  claims ``iss, sub, aud, exp, iat, jti, client_id`` and ``scope`` when one was granted.

PyJWT signs, joserfc encrypts (with a registry allowing only RSA-OAEP-256 and A256GCM): maintained
JOSE libraries, no hand-written JOSE. Serialising the JWS and JWE ourselves with ``cryptography`` was
measured at about 20 % less CPU per token; that is not worth owning a JOSE implementation. No e-mail
or other personal data ever enters a token.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

import jwt
from joserfc import jwe
from joserfc.jwk import RSAKey

from .keys import Keyring
from .token_reference import HEADER_PARAMETER, References
from .verify.b64 import b64url_encode
from .verify.envelope import MAX_HEADER_SEGMENT, access_token_registry

JWE_ALG, JWE_ENC = "RSA-OAEP-256", "A256GCM"
JWE_REGISTRY = access_token_registry()  # the verification library's: what the minter writes, audiences accept
ACCESS_TOKEN_TYPE = "at+jwt"


@dataclass(frozen=True)
class EncryptionKey:
    """An audience's public encryption key, parsed once."""

    kid: str
    key: RSAKey


@dataclass(frozen=True)
class AccessToken:
    token: str
    jti: str
    issued_at: int
    expires_at: int
    referenced: bool  # the header carries the sealed reference: the service needs no record of it


def _header_segment_length(header: Mapping[str, Any]) -> int:
    """The length of the base64url segment joserfc makes of ``header`` (compact JSON, no padding)."""
    return len(b64url_encode(json.dumps(header, separators=(",", ":")).encode("utf-8")))


def new_jti() -> str:
    return secrets.token_urlsafe(16)


class TokenMinter:
    """Signs and encrypts tokens with the keyring's active signing key."""

    def __init__(self, keyring: Keyring, *, issuer: str, access_token_ttl: int, id_token_ttl: int) -> None:
        self._keyring = keyring
        self.references = References(keyring)
        self._issuer = issuer
        self._access_ttl = access_token_ttl
        self._id_ttl = id_token_ttl

    def _sign(self, claims: dict[str, Any], typ: str) -> tuple[str, str]:
        """The compact JWS and the kid of the key that signed it."""
        key = self._keyring.active_signing_key()
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"typ": typ, "kid": key.kid}), key.kid

    def access_token(
        self,
        *,
        subject: str,
        client_id: str,
        audience: str,
        encryption_key: EncryptionKey,
        scope: str | None,
        now: float,
        reference: Mapping[str, Any],
    ) -> AccessToken:
        """RFC 9068 claims, signed (RS256, ``typ: at+jwt``), then encrypted to the audience.

        ``reference`` is what the service must know of the token later besides its ``jti``, ``iat`` and
        ``exp`` (``identity.token_reference``); it is sealed into the header unless that would make the
        header longer than the verification library accepts (then ``referenced`` is False).
        """
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
        inner, signing_kid = self._sign(claims, ACCESS_TOKEN_TYPE)
        header = {"alg": JWE_ALG, "enc": JWE_ENC, "cty": "JWT", "kid": encryption_key.kid}
        sealed = {"j": claims["jti"], "i": issued_at, "e": claims["exp"], **reference}
        header[HEADER_PARAMETER] = self.references.seal(signing_kid, sealed)
        referenced = _header_segment_length(header) <= MAX_HEADER_SEGMENT
        if not referenced:  # a very long scope or audience: the caller keeps a record instead
            del header[HEADER_PARAMETER]
        outer = jwe.encrypt_compact(header, inner.encode("ascii"), encryption_key.key, registry=JWE_REGISTRY)
        return AccessToken(token=outer, jti=claims["jti"], issued_at=issued_at, expires_at=claims["exp"],
                           referenced=referenced)

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
        return self._sign(claims, "JWT")[0]
