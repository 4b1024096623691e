"""``IdTokenVerifier``: an app (relying party) checks the ID token it got from the code exchange.

OpenID Connect Core §3.1.3.7, for this issuer's ID tokens (a compact JWS, RS256, ``typ: JWT``):
the key comes only from the issuer's JWKS by ``kid`` (the same cached ``SigningKeys`` the access
token verifier uses), ``iss`` must equal the issuer, ``aud`` must contain the client id (and ``azp``,
when there are several audiences, name it), ``exp`` not passed and ``iat`` not in the future (both
with leeway), ``sub`` present, and ``nonce`` equal to the one the app sent, when it sent one.

    verifier = IdTokenVerifier(issuer="https://id.example.org", client_id="my-app-id")
    claims = verifier.verify(token_response["id_token"], nonce=sent_nonce)
    claims.subject, claims.auth_time
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import jwt
from jwt import exceptions as jwt_errors

from .claims import freeze, issued_in_past, not_expired, string_claim, time_claim
from .discovery import Discovery
from .envelope import HeaderMemo, key_id
from .errors import (
    BadSignature,
    ClaimError,
    ConfigurationError,
    InvalidToken,
    MalformedToken,
    MissingClaim,
    UnsupportedToken,
    WrongAudience,
    WrongIssuer,
)
from .http import Fetcher, RequestsFetcher
from .jwks import DEFAULT_MIN_REFRESH_SECONDS, DEFAULT_TTL_SECONDS, SigningKeys
from .verifier import COMPACT_CHARACTERS, DEFAULT_LEEWAY_SECONDS, check_issuer_and_leeway

SIGNING_ALG = "RS256"
ID_TOKEN_TYPES = frozenset({"jwt", "application/jwt"})
MAX_ID_TOKEN_LENGTH = 8 * 1024
REQUIRED = ("iss", "sub", "aud", "exp", "iat")


@dataclass(frozen=True, slots=True)
class IdToken:
    """A verified ID token. ``subject`` is how the issuer names the person to this app."""

    subject: str
    issuer: str
    audience: tuple[str, ...]
    expires_at: int
    issued_at: int
    auth_time: int | None
    nonce: str | None
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)


class WrongNonce(ClaimError):
    default_message = "the ID token's nonce is not the one this app sent"


def _utf8(text: str) -> bytes:
    """``text`` as bytes for a comparison; a lone surrogate (JSON can carry ``"\\ud800"``) is kept, not an error."""
    return text.encode("utf-8", "surrogatepass")


def check_id_token_header(header: Mapping[str, Any]) -> str:
    if header.get("alg") != SIGNING_ALG:
        raise UnsupportedToken("the ID token's signature algorithm is refused")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ID_TOKEN_TYPES):
        raise UnsupportedToken("the token is not an ID token (typ)")
    if "crit" in header or "b64" in header:
        raise UnsupportedToken("ID tokens with critical header extensions are refused")
    return key_id(header)


class IdTokenVerifier:
    """Verifies this issuer's ID tokens for one client (thread-safe; build one per process).

    :param issuer: the issuer URL, exactly as in the tokens' ``iss``
    :param client_id: the app's client id, which the tokens' ``aud`` must contain
    :param jwks_uri: the issuer's JWKS; when omitted, taken from its discovery document
    :param fetcher: HTTP for discovery and JWKS (default: ``RequestsFetcher``)
    :param leeway: clock skew tolerated on ``exp`` and ``iat``, seconds (0–300)
    """

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        jwks_uri: str | None = None,
        fetcher: Fetcher | None = None,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
        jwks_ttl: float = DEFAULT_TTL_SECONDS,
        min_jwks_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_issuer_and_leeway(issuer, leeway)
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be the app's client id")
        self.issuer = issuer
        self.client_id = client_id
        self._leeway = float(leeway)
        self._clock = clock
        fetcher = fetcher if fetcher is not None else RequestsFetcher()
        discovery = Discovery(issuer, fetcher, monotonic=monotonic) if jwks_uri is None else None
        self._keys = SigningKeys(fetcher, jwks_uri=jwks_uri, discovery=discovery, ttl=jwks_ttl,
                                 min_refresh_interval=min_jwks_refresh_interval, monotonic=monotonic)
        self._headers = HeaderMemo(check_id_token_header)
        self._jwt = jwt.PyJWT(options={
            "verify_signature": True, "verify_iss": True, "verify_aud": True, "verify_exp": False,
            "verify_nbf": False, "verify_iat": False, "require": list(REQUIRED), "strict_aud": False,
        })

    def __repr__(self) -> str:
        return f"IdTokenVerifier(issuer={self.issuer!r}, client_id={self.client_id!r})"

    def verify(self, token: Any, *, nonce: str | None = None) -> IdToken:
        """Verify ``token``; ``nonce``: the value this app sent in its authorization request.

        :raises InvalidToken: (a subclass naming the reason) for a token the app must not accept
        :raises IssuerUnavailable: when the issuer's keys cannot be fetched
        """
        if not isinstance(token, str) or not 0 < len(token) <= MAX_ID_TOKEN_LENGTH:
            raise MalformedToken("the ID token is not a compact JWS")
        if not COMPACT_CHARACTERS.fullmatch(token):  # before anything encodes it (a lone surrogate cannot be)
            raise MalformedToken("the ID token is not a compact JWS")
        segments = token.split(".")
        if len(segments) != 3 or not segments[0] or not segments[1]:
            raise MalformedToken("the ID token is not a compact JWS")
        public_key = self._keys.key(self._headers.kid(segments[0]))
        claims = self._decode(token, public_key)
        return self._checked(claims, nonce)

    def _decode(self, token: str, public_key: Any) -> dict[str, Any]:
        try:
            return self._jwt.decode(token, public_key, algorithms=[SIGNING_ALG], issuer=self.issuer,
                                    audience=self.client_id)
        except jwt_errors.InvalidSignatureError:
            raise BadSignature("the ID token signature does not verify") from None
        except jwt_errors.MissingRequiredClaimError as exc:
            raise MissingClaim(exc.claim) from None
        except jwt_errors.InvalidIssuerError:
            raise WrongIssuer("iss", "the ID token was issued by another issuer") from None
        except jwt_errors.InvalidAudienceError:
            raise WrongAudience("aud", "the ID token is meant for another app") from None
        except jwt_errors.DecodeError:
            raise MalformedToken("the ID token is not a compact JWS") from None
        except jwt_errors.PyJWTError:
            raise InvalidToken("the ID token is invalid") from None

    def _checked(self, claims: Mapping[str, Any], nonce: str | None) -> IdToken:
        now = self._clock()
        audience = claims["aud"]
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        if len(audiences) > 1 and claims.get("azp") != self.client_id:  # §3.1.3.7 items 4-5
            raise WrongAudience("azp", "the ID token's authorized party is another app")
        exp, iat = time_claim(claims, "exp"), time_claim(claims, "iat")
        if exp is None or iat is None:
            raise MissingClaim("exp" if exp is None else "iat")
        not_expired(exp, now, self._leeway)
        issued_in_past(iat, now, self._leeway)
        token_nonce = claims.get("nonce")
        if nonce is not None and not (isinstance(token_nonce, str)
                                      and hmac.compare_digest(_utf8(token_nonce), _utf8(nonce))):
            raise WrongNonce("nonce")
        return IdToken(subject=string_claim(claims, "sub"), issuer=self.issuer, audience=audiences, expires_at=exp,
                       issued_at=iat, auth_time=time_claim(claims, "auth_time"),
                       nonce=token_nonce if isinstance(token_nonce, str) else None, claims=freeze(dict(claims)))

    def warm_up(self) -> None:
        """Fetch discovery and the JWKS now (e.g. at start-up); raises ``IssuerUnavailable``."""
        self._keys.refresh()
