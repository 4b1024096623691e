"""Creating and rotating key material (``scripts/keys.py init|rotate|list``).

Signing keys move through three states: *next* (published in the JWKS, not yet signing),
*active* (signs every new token) and *retired* (published until every token it signed has
expired, then dropped). Each ``rotate`` promotes next → active and active → retired, then adds a
fresh *next* key, so verifiers have seen a key in the JWKS for a whole rotation period before it
signs anything.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from joserfc.jwk import RSAKey

from .dpo_shares import DEFAULT_SHARES, DEFAULT_THRESHOLD, Holder, create_key_set, write_key_set

from .files import (
    KeyMaterialError,
    KeyPaths,
    load_private_key,
    new_pepper,
    private_key_pem,
    read_manifest,
    write_manifest,
    write_private_file,
    write_public_file,
)

RSA_KEY_BITS = 2048
NEXT, ACTIVE, RETIRED = "next", "active", "retired"


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the key's ``kid``."""
    return RSAKey.import_key(public_key).thumbprint()


@dataclass(frozen=True)
class Created:
    """What ``init`` wrote, for the operator's report."""

    signing_kid: str
    files: dict[str, Path]


@contextmanager
def locked(paths: KeyPaths) -> Iterator[None]:
    """Serialise init, rotate and passphrase changes between operators on the same keys directory."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _new_signing_key(paths: KeyPaths, passphrase: str | None) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    kid = thumbprint(key.public_key())
    write_private_file(paths.signing_key(kid), private_key_pem(key, passphrase))
    return kid


def init_keys(
    root: Path,
    *,
    passphrase: str | None,
    dpo_passphrase: str | None,
    development: bool,
    now: float,
    dpo_public: X25519PublicKey | None = None,
) -> Created:
    """Create the signing key, the self-audience key, the pepper, the DPO public key and the audit key in ``root``.

    ``dpo_public``: the public key of a DPO key set made offline (``scripts/keys.py dpo-create``,
    production); without it a new key set is made here, its shares (2 of 3, never the whole private
    key) written as ``dpo_share_<i>.json`` under ``dpo_passphrase``, or under the published
    development passphrase when that is None (development and tests).
    Refuses (``KeyMaterialError``) if any of those files already exists; an empty directory is fine.
    """
    paths = KeyPaths(root)
    with locked(paths):
        existing = [p for p in (paths.manifest, paths.pepper, paths.dpo_public, paths.self_encryption,
                                paths.audit_signing, paths.audit_public, paths.pairwise_key) if p.exists()]
        existing += paths.dpo_secrets()
        if existing:
            raise KeyMaterialError(f"{existing[0]} already exists; refusing to overwrite key material")
        kid = _new_signing_key(paths, passphrase)
        write_private_file(paths.pepper, new_pepper())
        self_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        write_private_file(paths.self_encryption, private_key_pem(self_key, passphrase))
        shares: list[Path] = []
        if dpo_public is None:
            holders = [Holder(f"holder-{i}", dpo_passphrase or "") for i in range(1, DEFAULT_SHARES + 1)]
            key_set = create_key_set(holders, DEFAULT_THRESHOLD, development=not dpo_passphrase)
            shares, dpo_public = write_key_set(paths.root, key_set), key_set.public_key
        write_public_file(
            paths.dpo_public,
            dpo_public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        _new_audit_key(paths, passphrase)
        write_private_file(paths.pairwise_key, new_pepper())  # 32 random bytes, base64url, like the pepper
        write_manifest(
            paths,
            {
                "version": 1,
                "development": development,
                "keys": [{"kid": kid, "state": ACTIVE, "created_at": int(now), "activated_at": int(now)}],
            },
        )
    return Created(
        signing_kid=kid,
        files={
            "signing_key": paths.signing_key(kid),
            "manifest": paths.manifest,
            "blind_index_pepper": paths.pepper,
            "self_encryption_key": paths.self_encryption,
            "dpo_public_key": paths.dpo_public,
            **{share.stem: share for share in shares},  # dpo_share_1 … (development)
            "audit_signing_key": paths.audit_signing,
            "audit_public_key": paths.audit_public,
            "pairwise_subject_key": paths.pairwise_key,
        },
    )


def _new_audit_key(paths: KeyPaths, passphrase: str | None) -> None:
    """The Ed25519 audit signing key (0600, encrypted with the passphrase) and its public half (0644)."""
    key = Ed25519PrivateKey.generate()
    write_private_file(paths.audit_signing, private_key_pem(key, passphrase))
    write_public_file(paths.audit_public, _public_pem(key))


def _public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def ensure_audit_key(root: Path, *, passphrase: str | None) -> list[Path]:
    """Add the audit signing key to an existing keys directory that lacks it; return the files written.

    A private key without its public half gets the public half back (that needs the passphrase); a
    public half without its private key is refused (``KeyMaterialError``): it may be all an auditor's
    copy should hold, and a new private key would not match it.
    """
    paths = KeyPaths(root)
    with locked(paths):
        if paths.audit_signing.exists():
            if paths.audit_public.exists():
                return []
            key = load_private_key(paths.audit_signing, passphrase)
            if not isinstance(key, Ed25519PrivateKey):
                raise KeyMaterialError(f"{paths.audit_signing} is not an Ed25519 private key")
            write_public_file(paths.audit_public, _public_pem(key))
            return [paths.audit_public]
        if paths.audit_public.exists():
            raise KeyMaterialError(
                f"{paths.audit_public} exists without {paths.audit_signing}: this directory holds only the "
                "public half (an auditor's copy?); restore the private key, or remove the public half to start a "
                "new audit key"
            )
        _new_audit_key(paths, passphrase)
        return [paths.audit_signing, paths.audit_public]


def ensure_pairwise_key(root: Path) -> list[Path]:
    """Add the pairwise subject key to an existing keys directory that lacks it; return the files written.

    Made once and never rotated: every pairwise subject any service holds is derived from it. Every
    instance of the service needs the same file (distribute the keys directory as a whole).
    """
    paths = KeyPaths(root)
    with locked(paths):
        if paths.pairwise_key.exists():
            return []
        write_private_file(paths.pairwise_key, new_pepper())
        return [paths.pairwise_key]


def rotate_signing_keys(
    root: Path, *, passphrase: str | None, longest_token_ttl: int, now: float
) -> dict[str, Any]:
    """Promote next → active → retired, add a new next key, drop retired keys no token needs.

    Returns the new manifest. A retired key is dropped only once ``longest_token_ttl`` seconds
    have passed since it stopped signing, so every token it signed has expired.
    """
    paths = KeyPaths(root)
    with locked(paths):
        manifest = read_manifest(paths)
        keys: list[dict[str, Any]] = manifest["keys"]
        upcoming = [k for k in keys if k["state"] == NEXT]
        if upcoming:
            for key in keys:
                if key["state"] == ACTIVE:
                    key["state"], key["retired_at"] = RETIRED, int(now)
            for key in upcoming:
                key["state"], key["activated_at"] = ACTIVE, int(now)
        kept, dropped = _drop_expired(keys, longest_token_ttl=longest_token_ttl, now=now)
        kept.append({"kid": _new_signing_key(paths, passphrase), "state": NEXT, "created_at": int(now)})
        manifest["keys"] = kept
        write_manifest(paths, manifest)
        for kid in dropped:
            _remove_quietly(paths.signing_key(kid))
    return manifest


def _drop_expired(
    keys: list[dict[str, Any]], *, longest_token_ttl: int, now: float
) -> tuple[list[dict[str, Any]], list[str]]:
    kept, dropped = [], []
    for key in keys:
        if key["state"] == RETIRED and key.get("retired_at", now) + longest_token_ttl <= now:
            dropped.append(key["kid"])
        else:
            kept.append(key)
    return kept, dropped


def _remove_quietly(path: Path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def describe(root: Path) -> list[dict[str, Any]]:
    """The manifest's keys, for ``keys.py list`` (no secret material)."""
    return list(read_manifest(KeyPaths(root))["keys"])

