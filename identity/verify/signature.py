"""The inner layer: a compact JWS (RFC 7515) signed by the issuer, verified with PyJWT.

Only RS256; ``typ`` must be ``at+jwt`` (RFC 9068 §4, also in its ``application/`` form); no
``crit``. The key comes only from the issuer's JWKS, by ``kid``; ``jku``/``jwk``/``x5u``/``x5c``
headers are never read, so a token can never make the verifier fetch or trust a key it names.
"""

from __future__ import annotations

from typing import Any, Mapping

import jwt
from jwt import exceptions as jwt_errors

from .envelope import HeaderMemo, key_id
from .errors import (
    BadSignature,
    InvalidToken,
    MalformedToken,
    MissingClaim,
    UnsupportedToken,
    WrongAudience,
    WrongIssuer,
)
from .jwks import SigningKeys

SIGNING_ALG = "RS256"
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


def check_jws_header(header: Mapping[str, Any]) -> str:
    """Enforce the contract's JWS header; return its ``kid``."""
    if header.get("alg") != SIGNING_ALG:
        raise UnsupportedToken("the access token's signature algorithm is refused")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise UnsupportedToken("the token is not an access token (typ)")
    if "crit" in header or "b64" in header:
        raise UnsupportedToken("access tokens with critical header extensions are refused")
    return key_id(header)


class SignatureVerifier:
    """Verifies the inner JWS and returns its claims; signature, ``iss`` and ``aud`` via PyJWT."""

    def __init__(self, keys: SigningKeys, *, issuer: str, audience: str, required: frozenset[str]) -> None:
        self._keys = keys
        self._headers = HeaderMemo(check_jws_header)
        self._issuer = issuer
        self._audience = audience
        # Time checks happen in ``claims`` against the verifier's clock; PyJWT checks the rest.
        self._jwt = jwt.PyJWT(options={
            "verify_signature": True, "verify_iss": True, "verify_aud": True, "verify_sub": True,
            "verify_jti": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
            "require": sorted(required), "strict_aud": False,
        })

    def verify(self, compact: bytes) -> tuple[dict[str, Any], str]:
        """``(claims, signing kid)``; raises an ``InvalidToken`` or ``IssuerUnavailable``."""
        try:
            text = compact.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedToken() from None
        segments = text.split(".")
        if len(segments) != 3:
            raise MalformedToken("the decrypted access token is not a compact JWS")
        kid = self._headers.kid(segments[0])
        public_key = self._keys.key(kid)
        try:
            claims = self._jwt.decode(
                text, public_key, algorithms=[SIGNING_ALG], issuer=self._issuer, audience=self._audience
            )
        except jwt_errors.InvalidSignatureError:
            raise BadSignature() from None
        except jwt_errors.MissingRequiredClaimError as exc:
            raise MissingClaim(exc.claim) from None
        except jwt_errors.InvalidIssuerError:
            raise WrongIssuer("iss") from None
        except jwt_errors.InvalidAudienceError:
            raise WrongAudience("aud") from None
        except (jwt_errors.InvalidSubjectError, jwt_errors.InvalidJTIError) as exc:
            raise MissingClaim("sub" if isinstance(exc, jwt_errors.InvalidSubjectError) else "jti") from None
        except jwt_errors.InvalidAlgorithmError:
            raise UnsupportedToken() from None
        except jwt_errors.DecodeError:
            raise MalformedToken() from None
        except jwt_errors.PyJWTError:
            raise InvalidToken() from None
        return claims, kid
