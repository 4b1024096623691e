"""``TokenVerifier``: the resource server's one call, ``verify(token) -> AccessToken``.

Pipeline (each step raises a typed ``VerificationError``): size and character checks → cache of
verified tokens (a hit only while both keys it was verified with are still held) → JWE header checks
and decryption with the audience key named by ``kid`` → JWS header checks and RS256 verification with
the issuer key named by ``kid`` (JWKS cache) → claim checks (``iss``, ``aud``, ``exp``, ``nbf``, ``iat``,
required claims) → cache → result.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable, Iterable

from .cache import DEFAULT_MAX_ENTRIES, VerifiedCache, token_digest
from .claims import REQUIRED_CLAIMS, AccessToken, check_claims
from .discovery import Discovery
from .envelope import Decrypter
from .errors import ConfigurationError, InsufficientScope, MalformedToken
from .http import Fetcher, RequestsFetcher, require_safe_url
from .introspection import ClientCredentials, IntrospectionClient
from .jwks import (
    DEFAULT_MAX_TTL_SECONDS,
    DEFAULT_MIN_REFRESH_SECONDS,
    DEFAULT_MIN_TTL_SECONDS,
    DEFAULT_TTL_SECONDS,
    SigningKeys,
)
from .keys import DecryptionKey, DecryptionKeySource, PemOrKey, StaticDecryptionKeys, index_decryption_keys
from .signature import SignatureVerifier

log = logging.getLogger(__name__)

DEFAULT_LEEWAY_SECONDS = 30.0
MAX_LEEWAY_SECONDS = 300.0
MAX_TOKEN_LENGTH = 16 * 1024
#: the characters of a compact JWE or JWS: base64url segments joined by dots
COMPACT_CHARACTERS = re.compile(r"[A-Za-z0-9_\-.]+")


def scope_set(scope: str | Iterable[str] | None) -> frozenset[str]:
    """``"a b"`` or ``["a", "b"]`` → ``{"a", "b"}``."""
    if scope is None:
        return frozenset()
    if isinstance(scope, str):
        return frozenset(scope.split())
    return frozenset(s for item in scope for s in item.split())



def check_issuer_and_leeway(issuer: object, leeway: float) -> None:
    """``ConfigurationError`` unless ``issuer`` is a safe issuer URL and ``leeway`` is within bounds
    (shared by the access-token and ID-token verifiers)."""
    if not isinstance(issuer, str) or not issuer:
        raise ConfigurationError("issuer must be the issuer URL")
    require_safe_url(issuer, "issuer")
    if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise ConfigurationError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS:g} seconds")

class TokenVerifier:
    """Verifies the issuer's nested access tokens for one audience.

    :param issuer: the issuer URL, exactly as in the tokens' ``iss``
    :param audience: this service's audience (resource indicator), exactly as registered
    :param decryption_keys: this audience's private keys; several during a key rotation, the
        JWE ``kid`` selects one (``DecryptionKey``, RSA private key objects or PEM), or a source
        re-read while running, such as ``DecryptionKeyDirectory`` (a rotation without a restart)
    :param jwks_uri: the issuer's JWKS; when omitted, taken from its discovery document
    :param jwks_ttl: how long a JWKS whose response has no ``Cache-Control: max-age`` is kept;
        a ``max-age`` is obeyed within [``jwks_min_ttl``, ``jwks_max_ttl``]
    :param fetcher: HTTP for discovery, JWKS and introspection (default: ``RequestsFetcher``)
    :param leeway: clock skew tolerated on ``exp``/``nbf``/``iat``, seconds (0–300)
    :param required_claims: claims required on top of RFC 9068's
    :param introspection: client credentials to enable ``verify(..., introspect=True)``
    :param introspection_endpoint: explicit endpoint (default: from discovery)
    :raises ConfigurationError: for unusable settings (nothing is fetched here)
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        decryption_keys: Iterable[DecryptionKey | PemOrKey] | DecryptionKey | DecryptionKeySource,
        jwks_uri: str | None = None,
        fetcher: Fetcher | None = None,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
        required_claims: Iterable[str] = (),
        jwks_ttl: float = DEFAULT_TTL_SECONDS,
        jwks_min_ttl: float = DEFAULT_MIN_TTL_SECONDS,
        jwks_max_ttl: float = DEFAULT_MAX_TTL_SECONDS,
        min_jwks_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        cache_size: int = DEFAULT_MAX_ENTRIES,
        max_token_length: int = MAX_TOKEN_LENGTH,
        introspection: ClientCredentials | None = None,
        introspection_endpoint: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_issuer_and_leeway(issuer, leeway)
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("audience must be a non-empty string")
        if not 0 < jwks_min_ttl <= jwks_max_ttl:
            raise ConfigurationError("the JWKS TTL bounds must satisfy 0 < jwks_min_ttl <= jwks_max_ttl")
        self.issuer = issuer
        self.audience = audience
        self._leeway = float(leeway)
        self._required = REQUIRED_CLAIMS | frozenset(required_claims)
        self._max_length = max_token_length
        self._clock = clock
        self._fetcher: Fetcher = fetcher if fetcher is not None else RequestsFetcher()
        self._discovery = Discovery(issuer, self._fetcher, monotonic=monotonic) if jwks_uri is None else None
        self._cache: VerifiedCache[AccessToken] = VerifiedCache(cache_size)
        if callable(getattr(decryption_keys, "current", None)):
            self._keys: DecryptionKeySource = decryption_keys  # type: ignore[assignment]  # it has current()
        else:
            self._keys = StaticDecryptionKeys(index_decryption_keys(decryption_keys))
        self._decrypter = Decrypter(self._keys, on_keys_removed=self._forget_tokens_decrypted_with)
        self._signing_keys = SigningKeys(
            self._fetcher, jwks_uri=jwks_uri, discovery=self._discovery, ttl=jwks_ttl,
            min_refresh_interval=min_jwks_refresh_interval, monotonic=monotonic,
            on_keys_removed=self._forget_tokens_signed_by, min_ttl=jwks_min_ttl, max_ttl=jwks_max_ttl,
        )
        self._signature = SignatureVerifier(
            self._signing_keys, issuer=issuer, audience=audience, required=self._required
        )
        self._introspection = self._introspection_client(introspection, introspection_endpoint)

    def __repr__(self) -> str:
        return f"TokenVerifier(issuer={self.issuer!r}, audience={self.audience!r}, kids={sorted(self.decryption_kids)})"

    @property
    def decryption_kids(self) -> frozenset[str]:
        """The JWE ``kid`` values this verifier accepts (the audience keys it holds)."""
        return self._decrypter.kids

    def _introspection_client(
        self, credentials: ClientCredentials | None, endpoint: str | None
    ) -> IntrospectionClient | None:
        if credentials is None:
            return None
        discovery = self._discovery or Discovery(self.issuer, self._fetcher)
        return IntrospectionClient(
            credentials, self._fetcher, endpoint=endpoint,
            endpoint_from=lambda: discovery.metadata().introspection_endpoint,
        )

    def replace_decryption_keys(self, keys: Iterable[DecryptionKey | PemOrKey] | DecryptionKey) -> None:
        """Hold ``keys`` from now on (a rotation in code; ``DecryptionKeyDirectory`` does it from files).

        Tokens verified with a key no longer held are forgotten.
        :raises ConfigurationError: for no key, duplicate ``kid`` or unusable keys (the old ones stay)
        """
        if not isinstance(self._keys, StaticDecryptionKeys):
            raise ConfigurationError("this verifier reads its keys from a source: change the source")
        self._keys.replace(index_decryption_keys(keys))
        self._decrypter.kids  # noqa: B018 - notice the removal now, not at the next token

    def _forget_tokens_decrypted_with(self, kids: frozenset[str]) -> None:
        dropped = self._cache.discard_where(lambda token: token.decryption_kid in kids)
        log.info("stopped holding %d audience key(s); forgot %d cached token(s)", len(kids), dropped)

    def _forget_tokens_signed_by(self, kids: frozenset[str]) -> None:
        dropped = self._cache.discard_where(lambda token: token.signing_kid in kids)
        log.info("issuer withdrew %d signing key(s); forgot %d cached token(s)", len(kids), dropped)

    # -- verification --------------------------------------------------------------------------

    def verify(self, token: Any, *, introspect: bool = False) -> AccessToken:
        """Verify an access token and return its claims.

        :param introspect: also ask the issuer (RFC 7662) whether it was revoked; never cached
        :raises InvalidToken: (a subclass naming the reason) for any token that must not be accepted
        :raises IssuerUnavailable: when the issuer's keys or introspection cannot be reached
        """
        if not isinstance(token, str) or not 0 < len(token) <= self._max_length:
            raise MalformedToken()
        digest = token_digest(token)
        now = self._clock()
        verified = self._cache.get(digest, now - self._leeway)
        if verified is not None and not self._keys_still_held(verified):
            self._cache.discard(digest)
            verified = None
        if verified is None:  # a hit is byte-identical to a token that passed every check below
            if not COMPACT_CHARACTERS.fullmatch(token):
                raise MalformedToken()
            verified = self._verify_uncached(token, now)
            self._cache.put(digest, verified, verified.expires_at)
        if introspect:
            self._introspect(token, verified)
        return verified

    def _keys_still_held(self, verified: AccessToken) -> bool:
        """A cached token stands only while its audience key and the issuer's signing key are still held
        (each source refreshing on its own schedule: the key directory's reload, the JWKS TTL)."""
        return (self._decrypter.holds(verified.decryption_kid)
                and self._signing_keys.holds(verified.signing_kid))

    def _verify_uncached(self, token: str, now: float) -> AccessToken:
        plaintext, decryption_kid = self._decrypter.decrypt(token)
        claims, signing_kid = self._signature.verify(plaintext)
        return check_claims(
            claims, issuer=self.issuer, audience=self.audience, required=self._required,
            now=now, leeway=self._leeway, signing_kid=signing_kid, decryption_kid=decryption_kid,
        )

    def _introspect(self, token: str, verified: AccessToken) -> None:
        if self._introspection is None:
            raise ConfigurationError("introspection was requested but no client credentials are configured")
        self._introspection.confirm(token, verified)

    @staticmethod
    def require_scope(token: AccessToken, scope: str | Iterable[str] | None) -> None:
        """``InsufficientScope`` unless the token carries every scope named."""
        required = scope_set(scope)
        if not token.scopes.issuperset(required):
            raise InsufficientScope(required)

    # -- housekeeping --------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Fetch discovery and the JWKS now (e.g. at start-up); raises ``IssuerUnavailable``."""
        self._signing_keys.refresh()

    def forget_cached_tokens(self) -> None:
        self._cache.clear()
