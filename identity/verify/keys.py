"""Key material the verifier holds: the audience's private decryption keys and the issuer's public
signing keys (parsed from a JWKS once per fetch, never per token)."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from .b64 import b64url_decode
from .errors import ConfigurationError, IssuerUnavailable

log = logging.getLogger(__name__)

MIN_RSA_BITS = 2048
MAX_KID_LENGTH = 128
SIGNING_ALG = "RS256"

KEY_FILE_PATTERN = "audience-*.key.pem"  # as written by identity.verify.keygen
DEFAULT_KEY_RELOAD_SECONDS = 5.0

PemOrKey = Union[bytes, str, rsa.RSAPrivateKey]


class DecryptionKeySource(Protocol):
    """Where a verifier takes its audience keys from at each token: ``kid`` → key."""

    def current(self) -> Mapping[str, DecryptionKey]: ...


def thumbprint(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of the public part: the ``kid`` convention."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return RSAKey.import_key(public).thumbprint()


@dataclass(frozen=True)
class DecryptionKey:
    """One audience private key, as joserfc wants it, with the JWE ``kid`` that selects it.

    ``repr`` never shows the key.
    """

    kid: str
    jwk: RSAKey = field(repr=False, compare=False)

    @classmethod
    def from_private_key(cls, key: rsa.RSAPrivateKey, *, kid: str | None = None) -> DecryptionKey:
        """Wrap an RSA private key (≥ 2048 bits); ``kid`` defaults to its RFC 7638 thumbprint."""
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("a decryption key must be an RSA private key")
        if key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(f"a decryption key must have at least {MIN_RSA_BITS} bits")
        kid = kid if kid is not None else thumbprint(key)
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
            raise ConfigurationError("a decryption key id must be a non-empty short string")
        return cls(kid=kid, jwk=RSAKey.import_key(key))

    @classmethod
    def from_pem(cls, pem: bytes | str, *, passphrase: str | None = None, kid: str | None = None) -> DecryptionKey:
        """Load a PEM private key (PKCS#8 or PKCS#1, encrypted when ``passphrase`` is given)."""
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=passphrase.encode("utf-8") if passphrase else None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "cannot load the decryption key: wrong passphrase or not a PEM private key"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("a decryption key must be an RSA private key")
        return cls.from_private_key(key, kid=kid)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, passphrase: str | None = None, kid: str | None = None
    ) -> DecryptionKey:
        """Load a PEM private key file (as written by ``identity.verify.keygen``)."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read decryption key file {os.fspath(path)}: {exc.strerror}") from exc
        return cls.from_pem(data, passphrase=passphrase, kid=kid)


def as_decryption_key(value: DecryptionKey | PemOrKey) -> DecryptionKey:
    """Accept a ``DecryptionKey``, an RSA private key object, or PEM text/bytes."""
    if isinstance(value, DecryptionKey):
        return value
    if isinstance(value, rsa.RSAPrivateKey):
        return DecryptionKey.from_private_key(value)
    if isinstance(value, (bytes, str)):
        return DecryptionKey.from_pem(value)
    raise ConfigurationError("decryption keys must be DecryptionKey, RSA private keys or PEM")


def index_decryption_keys(values: Any) -> dict[str, DecryptionKey]:
    """``kid`` → key for the configured keys; at least one, no duplicate ``kid``."""
    if isinstance(values, (DecryptionKey, rsa.RSAPrivateKey, bytes, str)):
        values = [values]
    keys = [as_decryption_key(v) for v in values]
    if not keys:
        raise ConfigurationError("at least one decryption key is required")
    indexed = {k.kid: k for k in keys}
    if len(indexed) != len(keys):
        raise ConfigurationError("two decryption keys share one kid")
    return indexed


def _b64url_uint(value: Any) -> int:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise ValueError("not a base64url integer")
    raw = b64url_decode(value)
    return int.from_bytes(raw, "big")


def public_key_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey | None:
    """The RS256 verification key a JWKS member describes, or None when it is not one.

    Only the public members ``n`` and ``e`` are read: a JWKS can never smuggle in a private or
    symmetric key, and keys marked for another use or algorithm are skipped.
    """
    if jwk.get("kty") != "RSA":
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", SIGNING_ALG) != SIGNING_ALG:
        return None
    try:
        key = rsa.RSAPublicNumbers(e=_b64url_uint(jwk.get("e")), n=_b64url_uint(jwk.get("n"))).public_key()
    except (ValueError, TypeError):
        return None
    if key.key_size < MIN_RSA_BITS:
        return None
    return key


def parse_jwks(document: Mapping[str, Any]) -> dict[str, rsa.RSAPublicKey]:
    """``kid`` → public key for every usable RS256 key of a JWKS (RFC 7517 §5)."""
    members = document.get("keys")
    if not isinstance(members, list):
        raise IssuerUnavailable("the issuer's JWKS has no key list")
    keys: dict[str, rsa.RSAPublicKey] = {}
    for member in members:
        if not isinstance(member, dict):
            continue
        kid = member.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH or kid in keys:
            continue
        key = public_key_from_jwk(member)
        if key is not None:
            keys[kid] = key
    if not keys:
        log.warning("the issuer's JWKS holds no usable RS256 key")
    return keys


class StaticDecryptionKeys:
    """The audience keys given at construction; ``replace`` swaps them (a rotation done in code)."""

    def __init__(self, keys: Mapping[str, DecryptionKey]) -> None:
        self._keys = dict(keys)

    def current(self) -> Mapping[str, DecryptionKey]:
        return self._keys

    def replace(self, keys: Mapping[str, DecryptionKey]) -> None:
        self._keys = dict(keys)


class DecryptionKeyDirectory:
    """Every ``audience-*.key.pem`` of a directory, re-read when its files change: a rotation needs no restart.

    The directory is looked at no more than once per ``reload_interval`` seconds (a ``stat`` of each key
    file). During a rotation it holds the old and the new key (JWE ``kid`` selects one); deleting the old
    file retires it. A reload that fails (a half-copied file, a wrong passphrase) or would leave no key at
    all keeps the keys held so far and logs why, so a botched deployment never stops verification.

    :raises ConfigurationError: at construction, when the directory holds no usable key
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        passphrase: str | None = None,
        pattern: str = KEY_FILE_PATTERN,
        reload_interval: float = DEFAULT_KEY_RELOAD_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self._passphrase = passphrase
        self._pattern = pattern
        self._interval = reload_interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self._keys = self._load()
        if not self._keys:
            raise ConfigurationError(f"no {pattern} in {self.directory}")
        self._checked_at = monotonic()

    def __repr__(self) -> str:
        return f"DecryptionKeyDirectory({str(self.directory)!r}, kids={sorted(self._keys)})"

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        stamp = []
        for path in sorted(self.directory.glob(self._pattern)):
            try:
                info = path.stat()
            except OSError:
                continue  # removed as we looked
            stamp.append((path.name, info.st_mtime_ns, info.st_size))
        return tuple(stamp)

    def _load(self) -> dict[str, DecryptionKey]:
        keys = [DecryptionKey.from_file(self.directory / name, passphrase=self._passphrase)
                for name, _, _ in self._stamp]
        return index_decryption_keys(keys) if keys else {}

    def current(self) -> Mapping[str, DecryptionKey]:
        """The keys held now (re-read first when the interval has passed and a file changed)."""
        now = self._monotonic()
        if now - self._checked_at < self._interval:
            return self._keys
        with self._lock:
            if now - self._checked_at >= self._interval:
                self._checked_at = now
                self._reload()
        return self._keys

    def _reload(self) -> None:
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return
        previous, self._stamp = self._stamp, stamp
        try:
            keys = self._load()
        except ConfigurationError as exc:
            self._stamp = previous  # try again at the next interval (e.g. the file was still being copied)
            log.warning("audience keys in %s not reloaded, keeping %d key(s): %s", self.directory, len(self._keys), exc)
            return
        if not keys:
            log.warning("no %s left in %s: keeping the %d key(s) held", self._pattern, self.directory, len(self._keys))
            return
        added, removed = sorted(set(keys) - set(self._keys)), sorted(set(self._keys) - set(keys))
        self._keys = keys
        log.info("audience keys reloaded from %s: %d held, %d added, %d removed", self.directory, len(keys),
                 len(added), len(removed))
