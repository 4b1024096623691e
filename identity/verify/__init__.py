"""Verify the identity service's access tokens in a downstream service (resource server).

Needs only joserfc, PyJWT, cryptography (and ``requests`` for the default fetcher): no Flask, no
store, none of the server's modules. ``identity.verify.flask`` adds a Flask decorator on top.

    verifier = TokenVerifier(
        issuer="https://id.example.org",
        audience="https://records.example.org",
        decryption_keys=[DecryptionKey.from_file("keys/audience-<kid>.key.pem")],
    )
    token = verifier.verify(bearer)      # AccessToken, or raises a VerificationError
    token.pseudonym, token.scopes

An app checks the ID token of its code exchange with ``IdTokenVerifier(issuer=…, client_id=…)``.
"""

from __future__ import annotations

from .claims import REQUIRED_CLAIMS, AccessToken
from .errors import (
    BadSignature,
    ClaimError,
    ConfigurationError,
    DecryptionFailed,
    InsufficientScope,
    InvalidToken,
    IssuerUnavailable,
    MalformedToken,
    MissingClaim,
    TokenExpired,
    TokenInactive,
    TokenNotYetValid,
    UnencryptedToken,
    UnknownKey,
    UnsupportedToken,
    VerificationError,
    WrongAudience,
    WrongIssuer,
)
from .http import Fetcher, HttpResponse, RequestsFetcher
from .id_token import IdToken, IdTokenVerifier, WrongNonce
from .introspection import ClientCredentials
from .keygen import AudienceKeyFiles, generate_audience_key
from .keys import DecryptionKey, DecryptionKeyDirectory, thumbprint
from .verifier import TokenVerifier, scope_set

__all__ = [
    "REQUIRED_CLAIMS", "AccessToken", "AudienceKeyFiles", "BadSignature", "ClaimError", "ClientCredentials",
    "ConfigurationError", "DecryptionFailed", "DecryptionKey", "DecryptionKeyDirectory", "Fetcher", "HttpResponse",
    "IdToken", "IdTokenVerifier", "InsufficientScope",
    "InvalidToken", "IssuerUnavailable", "MalformedToken", "MissingClaim", "RequestsFetcher", "TokenExpired",
    "TokenInactive", "TokenNotYetValid", "TokenVerifier", "UnencryptedToken", "UnknownKey", "UnsupportedToken",
    "VerificationError", "WrongAudience", "WrongIssuer", "WrongNonce", "generate_audience_key", "scope_set",
    "thumbprint",
]
