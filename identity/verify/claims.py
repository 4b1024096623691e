"""RFC 9068 access-token claims: the checks (one per function) and the typed result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from .errors import MissingClaim, TokenExpired, TokenNotYetValid, WrongAudience, WrongIssuer

#: RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat and jti are REQUIRED.
REQUIRED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "jti", "client_id"})
MAX_CLAIM_STRING = 1024


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token. ``subject`` is the pseudonym (or the client id for a
    client_credentials token); ``claims`` is a read-only view of every claim."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    issuer: str
    audience: tuple[str, ...]
    expires_at: int
    issued_at: int
    jti: str
    signing_kid: str
    decryption_kid: str
    not_before: int | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @property
    def pseudonym(self) -> str:
        """The person's pseudonym (for a client_credentials token: the client id)."""
        return self.subject

    @property
    def is_client_token(self) -> bool:
        """True for a client_credentials token, whose ``sub`` is the client itself (RFC 9068 §2.2)."""
        return self.subject == self.client_id

    def has_scopes(self, required: Iterable[str]) -> bool:
        return self.scopes.issuperset(required)


def freeze(value: Any) -> Any:
    """A read-only copy of a JSON value (lists become tuples, objects read-only mappings)."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def parse_scope(value: Any) -> frozenset[str]:
    """RFC 6749 §3.3 ``scope``: space-delimited; absent means no scope was granted."""
    if value is None:
        return frozenset()
    if not isinstance(value, str) or len(value) > 4 * MAX_CLAIM_STRING:
        raise MissingClaim("scope")
    return frozenset(value.split())


def require_claims(claims: Mapping[str, Any], names: Iterable[str]) -> None:
    for name in names:
        if claims.get(name) is None:
            raise MissingClaim(name)


def string_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM_STRING:
        raise MissingClaim(name)
    return value


def time_claim(claims: Mapping[str, Any], name: str) -> int | None:
    """A NumericDate (RFC 7519 §2) as whole seconds, None when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MissingClaim(name)
    return int(value)


def issuer_is(claims: Mapping[str, Any], issuer: str) -> str:
    """RFC 9068 §4: the ``iss`` MUST exactly match the issuer we trust."""
    if claims.get("iss") != issuer:
        raise WrongIssuer("iss")
    return issuer


def audience_includes(claims: Mapping[str, Any], audience: str) -> tuple[str, ...]:
    """RFC 9068 §4: the ``aud`` MUST contain our resource indicator."""
    value = claims.get("aud")
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise WrongAudience("aud")
    if audience not in values:
        raise WrongAudience("aud")
    return tuple(values)


def not_expired(exp: int, now: float, leeway: float) -> None:
    """RFC 7519 §4.1.4: reject on or after ``exp`` (plus leeway)."""
    if now >= exp + leeway:
        raise TokenExpired("exp")


def already_valid(nbf: int | None, now: float, leeway: float) -> None:
    """RFC 7519 §4.1.5: reject before ``nbf`` (minus leeway)."""
    if nbf is not None and now + leeway < nbf:
        raise TokenNotYetValid("nbf")


def issued_in_past(iat: int, now: float, leeway: float) -> None:
    """A token issued in the future (beyond the leeway) was minted by a clock we cannot trust."""
    if iat > now + leeway:
        raise TokenNotYetValid("iat")


def check_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    required: Iterable[str],
    now: float,
    leeway: float,
    signing_kid: str,
    decryption_kid: str,
) -> AccessToken:
    """Run every claim check in order and build the result; raises a ``ClaimError`` subclass."""
    require_claims(claims, required)
    issuer_is(claims, issuer)
    audiences = audience_includes(claims, audience)
    exp = time_claim(claims, "exp")
    iat = time_claim(claims, "iat")
    nbf = time_claim(claims, "nbf")
    if exp is None:
        raise MissingClaim("exp")
    if iat is None:
        raise MissingClaim("iat")
    not_expired(exp, now, leeway)
    already_valid(nbf, now, leeway)
    issued_in_past(iat, now, leeway)
    return AccessToken(
        subject=string_claim(claims, "sub"),
        client_id=string_claim(claims, "client_id"),
        scopes=parse_scope(claims.get("scope")),
        issuer=issuer,
        audience=audiences,
        expires_at=exp,
        issued_at=iat,
        not_before=nbf,
        jti=string_claim(claims, "jti"),
        signing_kid=signing_kid,
        decryption_kid=decryption_kid,
        claims=freeze(claims),
    )
