"""The outer layer: a compact JWE (RFC 7516) encrypted to this audience, decrypted with joserfc.

Refused before any key is touched: anything but five segments (a bare JWS or an opaque string is
not encrypted), an ``alg`` other than RSA-OAEP-256, an ``enc`` other than A256GCM, any ``zip``,
any ``crit``, a ``cty`` other than JWT, a missing or unknown ``kid``. ``jku``/``jwk``/``x5u``/``x5c``
are never read: the key is chosen only from the configured ones, by ``kid``. The issuer's own ``ref``
(its sealed reference to the token, opaque to an audience) is the one header parameter beyond the standard
ones that is accepted, and it is ignored.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from joserfc import jwe
from joserfc.jwe import JWERegistry
from joserfc.registry import HeaderParameter

from .b64 import b64url_decode
from .errors import DecryptionFailed, MalformedToken, UnencryptedToken, UnknownKey, UnsupportedToken
from .keys import MAX_KID_LENGTH, DecryptionKey, DecryptionKeySource

KEY_MANAGEMENT_ALG = "RSA-OAEP-256"
CONTENT_ENC = "A256GCM"
CONTENT_TYPE = "JWT"
MAX_HEADER_SEGMENT = 1024
MAX_REMEMBERED_HEADERS = 64
#: The header parameters of the access-token contract beyond RFC 7516's (joserfc refuses any other).
ISSUER_HEADER_PARAMETERS = {"ref": HeaderParameter("the issuer's sealed reference to the token", "str")}


def access_token_registry() -> JWERegistry:
    """joserfc's registry for the contract: RSA-OAEP-256 with A256GCM, and the issuer's ``ref``."""
    return JWERegistry(algorithms=[KEY_MANAGEMENT_ALG, CONTENT_ENC], header_registry=ISSUER_HEADER_PARAMETERS)


class HeaderMemo:
    """Header segment → ``kid`` for headers that already passed their checks.

    Every JWS signed with one issuer key carries the very same protected header, and the checks are a pure
    function of it, so each distinct header is parsed and checked once. (Not for the JWE: each access
    token's carries its own ``ref``.) Bounded: when full it starts over, so junk headers can cost time but
    never memory.
    """

    def __init__(self, check: Callable[[Mapping[str, Any]], str]) -> None:
        self._check = check
        self._kids: dict[str, str] = {}

    def kid(self, segment: str) -> str:
        kid = self._kids.get(segment)
        if kid is None:
            kid = self._check(decode_json_segment(segment))
            if len(self._kids) >= MAX_REMEMBERED_HEADERS:
                self._kids.clear()
            self._kids[segment] = kid
        return kid


def decode_json_segment(segment: str, *, limit: int = MAX_HEADER_SEGMENT) -> dict[str, Any]:
    """A base64url JSON object (a JOSE header); ``MalformedToken`` otherwise."""
    if not segment or len(segment) > limit:
        raise MalformedToken()
    try:
        raw = b64url_decode(segment)
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedToken() from None
    if not isinstance(value, dict):
        raise MalformedToken()
    return value


def key_id(header: Mapping[str, Any]) -> str:
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise UnknownKey("the access token does not name its key")
    return kid


def check_jwe_header(header: Mapping[str, Any]) -> str:
    """Enforce the contract's JWE header; return its ``kid``."""
    if header.get("alg") != KEY_MANAGEMENT_ALG:
        raise UnsupportedToken("the access token's key management algorithm is refused")
    if header.get("enc") != CONTENT_ENC:
        raise UnsupportedToken("the access token's content encryption is refused")
    if "zip" in header:
        raise UnsupportedToken("compressed access tokens are refused")
    if "crit" in header:
        raise UnsupportedToken("access tokens with critical header extensions are refused")
    cty = header.get("cty")
    if not isinstance(cty, str) or cty.upper() != CONTENT_TYPE:
        raise UnsupportedToken("the access token does not contain a JWT")
    return key_id(header)


class Decrypter:
    """Decrypts compact JWEs with the audience keys the source holds now; one joserfc registry, built once.

    ``on_keys_removed`` is told the ``kid`` of every key the source stopped holding (noticed at the next token).
    """

    def __init__(self, keys: DecryptionKeySource,
                 on_keys_removed: Callable[[frozenset[str]], None] | None = None) -> None:
        self._source = keys
        self._held = keys.current()
        self._on_keys_removed = on_keys_removed
        self._registry = access_token_registry()

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._current())

    def holds(self, kid: str) -> bool:
        """Whether the source holds the key ``kid`` now (a cheap re-check for a token decrypted earlier)."""
        return kid in self._current()

    def _current(self) -> Mapping[str, DecryptionKey]:
        keys = self._source.current()
        if keys is not self._held:
            removed = frozenset(self._held) - frozenset(keys)
            self._held = keys
            if removed and self._on_keys_removed is not None:
                self._on_keys_removed(removed)
        return keys

    def decrypt(self, token: str) -> tuple[bytes, str]:
        """``(plaintext, kid)``; raises an ``InvalidToken`` subclass."""
        segments = token.split(".")
        if len(segments) == 3:
            raise UnencryptedToken()
        if len(segments) != 5:
            raise MalformedToken()
        kid = check_jwe_header(decode_json_segment(segments[0]))  # unique per token (its ``ref``): no memo
        key = self._current().get(kid)
        if key is None:
            raise UnknownKey("the access token is encrypted to a key this service does not hold")
        try:
            plaintext = jwe.decrypt_compact(token, key.jwk, registry=self._registry).plaintext
        except Exception:  # noqa: BLE001 - joserfc and cryptography raise many types on hostile input; all mean "no"
            raise DecryptionFailed() from None
        if not plaintext:
            raise DecryptionFailed()
        return plaintext, kid
