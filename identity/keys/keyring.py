"""The running service's view of its key material: signing keys, JWKS, pepper, DPO public key.

Keys are parsed once and kept; the manifest is re-read when it changes on disk (checked at most
once a second), so every worker process follows a rotation without a restart and all agree on
the active key within a second. The next key is published a whole rotation period before it
signs, so that second of disagreement never produces a token a verifier cannot check.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from joserfc.jwk import RSAKey

from ..logs import security_event
from .files import (
    KeyMaterialError,
    KeyPaths,
    is_private_to_owner,
    load_dpo_public_key,
    load_pepper,
    load_private_key,
    pem_is_encrypted,
    read_manifest,
)
from .lifecycle import ACTIVE, NEXT, RETIRED

RELOAD_INTERVAL_SECONDS = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningKey:
    """One RS256 signing key. ``repr`` never shows the private part."""

    kid: str
    state: str
    private_key: RSAPrivateKey = field(repr=False)

    @property
    def public_key(self) -> RSAPublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        jwk = RSAKey.import_key(self.public_key).as_dict(private=False)
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": jwk["n"], "e": jwk["e"]}


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int]
    development: bool
    keys: tuple[SigningKey, ...]
    jwks: dict[str, Any]


@dataclass(frozen=True)
class _Failure:
    """Why the manifest on disk could not be loaded: its stamp (None: unreadable) and the error's message."""

    stamp: tuple[int, int] | None
    message: str


def load_pairwise_key(paths: KeyPaths) -> bytes:
    """The pairwise subject key; a directory from before it existed is told how to add it."""
    if not paths.pairwise_key.exists():
        raise KeyMaterialError(f"{paths.pairwise_key} is missing: run `python scripts/keys.py init --if-absent` "
                               "once and give every instance the same file (it is never rotated)")
    return load_pepper(paths.pairwise_key)


def _log_rotation(keys: tuple[SigningKey, ...]) -> None:
    """This process now signs with the manifest's active key (one event per process and rotation)."""
    security_event("key_rotation", "signing keys reloaded",
                   active_kid=next((k.kid for k in keys if k.state == ACTIVE), None),
                   next_kid=next((k.kid for k in keys if k.state == NEXT), None),
                   published_kids=len(keys))


class Keyring:
    """Signing keys, JWKS, the blind-index pepper and the DPO public key of one keys directory."""

    def __init__(
        self,
        root: Path,
        *,
        passphrase: str | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = KeyPaths(Path(root))
        self._passphrase = passphrase
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._parsed: dict[str, RSAPrivateKey] = {}
        self.pepper: bytes = load_pepper(self.paths.pepper)
        self.dpo_public_key: X25519PublicKey = load_dpo_public_key(self.paths.dpo_public)
        self.self_encryption_key: RSAPrivateKey = load_private_key(self.paths.self_encryption, passphrase)
        self.pairwise_key: bytes = load_pairwise_key(self.paths)
        self._loaded = self._load()
        self._failure: _Failure | None = None
        self._checked_at = self._monotonic()

    def __repr__(self) -> str:
        return f"Keyring(root={str(self.paths.root)!r})"

    # -- loading -----------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int]:
        try:
            st = os.stat(self.paths.manifest)
        except OSError as exc:
            raise KeyMaterialError(f"cannot read {self.paths.manifest}") from exc
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> _Loaded:
        stamp = self._stamp()
        manifest = read_manifest(self.paths)
        keys = []
        for entry in manifest["keys"]:
            kid, state = str(entry.get("kid")), entry.get("state")
            if state not in (NEXT, ACTIVE, RETIRED):
                raise KeyMaterialError(f"{self.paths.manifest}: key {kid} has unknown state {state!r}")
            if kid not in self._parsed:
                self._parsed[kid] = load_private_key(self.paths.signing_key(kid), self._passphrase)
            keys.append(SigningKey(kid=kid, state=state, private_key=self._parsed[kid]))
        if sum(1 for k in keys if k.state == ACTIVE) != 1:
            raise KeyMaterialError(f"{self.paths.manifest} must name exactly one active signing key")
        jwks = {"keys": [k.public_jwk() for k in keys]}
        return _Loaded(stamp=stamp, development=bool(manifest.get("development")), keys=tuple(keys), jwks=jwks)

    def _current(self) -> _Loaded:
        now = self._monotonic()
        if now - self._checked_at < RELOAD_INTERVAL_SECONDS:
            return self._loaded
        with self._lock:
            if now - self._checked_at >= RELOAD_INTERVAL_SECONDS:
                self._checked_at = now
                self._reload_if_changed()
        return self._loaded

    def _reload_if_changed(self) -> None:
        """Load the manifest if it changed on disk (called with the lock held, at most once a second).

        A failure keeps the keys loaded before serving (tokens go on being signed), is remembered for
        ``is_healthy`` and logged once; the next check tries again, so a fixed directory is taken up by itself.
        """
        stamp = None
        try:
            stamp = self._stamp()
            if stamp == self._loaded.stamp:
                self._failure = None
                return
            self._loaded = self._load()
        except KeyMaterialError as exc:
            self._note_failure(_Failure(stamp, str(exc)))
            return
        self._failure = None
        _log_rotation(self._loaded.keys)

    def _note_failure(self, failure: _Failure) -> None:
        """Remember a failed reload; a warning for each distinct one (the error names files, never key material)."""
        if failure != self._failure:
            log.warning("signing keys not reloaded, still signing with the keys loaded before: %s", failure.message)
        self._failure = failure

    def reload(self) -> None:
        """Re-read the manifest now (tests and operators' tools)."""
        with self._lock:
            self._loaded = self._load()
            self._failure = None
            self._checked_at = self._monotonic()

    # -- queries -----------------------------------------------------------------------------

    @property
    def development(self) -> bool:
        return self._current().development

    def active_signing_key(self) -> SigningKey:
        return next(k for k in self._current().keys if k.state == ACTIVE)

    def signing_keys(self) -> tuple[SigningKey, ...]:
        return self._current().keys

    def jwks(self) -> dict[str, Any]:
        """Public signing keys only (next, active, retired): what verifiers need, nothing more."""
        return self._current().jwks

    def is_healthy(self) -> bool:
        """False while the manifest cannot be read, or differs from the loaded one and the last try to load it
        failed (the keys loaded before go on signing meanwhile); true again once it loads."""
        self._current()  # a readiness probe retries a failed reload too, even with no token traffic
        try:
            stamp = self._stamp()
        except KeyMaterialError:
            return False
        return self._failure is None or stamp == self._loaded.stamp

    def production_problems(self) -> list[str]:
        """Why this key material must not serve production traffic (empty when it may)."""
        problems = []
        if self._loaded.development:
            problems.append("development keys: create production keys with `scripts/keys.py init`")
        for key in self._loaded.keys:
            if not pem_is_encrypted(self.paths.signing_key(key.kid)):
                problems.append(f"signing key {key.kid} is not encrypted with IDENTITY_KEYS_PASSPHRASE")
        if not pem_is_encrypted(self.paths.self_encryption):
            problems.append(f"{self.paths.self_encryption} is not encrypted with IDENTITY_KEYS_PASSPHRASE")
        for secret in (self.paths.pepper, self.paths.pairwise_key):
            if not is_private_to_owner(secret):
                problems.append(f"{secret} is readable by group or others (chmod 600)")
        for secret in self.paths.dpo_secrets():  # a whole DPO key or any of its shares
            problems.append(f"{secret} is DPO secret material on the service host: move it offline")
        return problems
