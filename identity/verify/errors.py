"""Typed verification errors: one base class, fixed messages, nothing from the token or a key.

Each error carries its RFC 6750 §3.1 ``error`` code and the HTTP status a resource server answers
with, Authlib-style, so a web layer can render any of them without knowing the subclass.
"""

from __future__ import annotations


class VerificationError(Exception):
    """Base class of every error raised by ``identity.verify``."""

    error = "invalid_token"
    status_code = 401
    default_message = "the access token is invalid"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class InvalidToken(VerificationError):
    """RFC 6750 §3.1 ``invalid_token``: malformed, forged, expired or not meant for us."""


class MalformedToken(InvalidToken):
    default_message = "the access token is not a well-formed compact JWE"


class UnencryptedToken(MalformedToken):
    default_message = "the access token is not encrypted (bare JWS or opaque string)"


class UnsupportedToken(InvalidToken):
    """A header names an algorithm, compression, content type or token type we refuse."""

    default_message = "the access token uses a refused algorithm or type"


class UnknownKey(InvalidToken):
    default_message = "the access token names a key this service does not know"


class DecryptionFailed(InvalidToken):
    default_message = "the access token could not be decrypted"


class BadSignature(InvalidToken):
    default_message = "the access token signature does not verify"


class ClaimError(InvalidToken):
    """A claim is missing or wrong; ``claim`` names it (the name only, never the value)."""

    default_message = "an access token claim is invalid"

    def __init__(self, claim: str, message: str | None = None) -> None:
        super().__init__(message or f"{self.default_message}: {claim}")
        self.claim = claim


class MissingClaim(ClaimError):
    default_message = "a required access token claim is missing or malformed"


class WrongIssuer(ClaimError):
    default_message = "the access token was issued by another issuer"


class WrongAudience(ClaimError):
    default_message = "the access token is meant for another audience"


class TokenExpired(ClaimError):
    default_message = "the access token has expired"


class TokenNotYetValid(ClaimError):
    default_message = "the access token is not valid yet"


class TokenInactive(InvalidToken):
    default_message = "the introspection endpoint reports the access token inactive"


class InsufficientScope(VerificationError):
    """RFC 6750 §3.1 ``insufficient_scope``: a valid token without the scope a call needs."""

    error = "insufficient_scope"
    status_code = 403
    default_message = "the access token lacks a required scope"

    def __init__(self, required: frozenset[str], message: str | None = None) -> None:
        super().__init__(message)
        self.required = required


class IssuerUnavailable(VerificationError):
    """The issuer's discovery, JWKS or introspection endpoint could not be used; try later."""

    error = "temporarily_unavailable"
    status_code = 503
    default_message = "the token issuer cannot be reached"


class ConfigurationError(VerificationError, ValueError):
    """The verifier was configured wrongly (raised at construction, never for a token)."""

    error = "server_error"
    status_code = 500
    default_message = "the token verifier is misconfigured"
