"""The DPO's private key: rebuilt from its holders' share files, and checked against the vault's public key.

The check compares the key's public half with ``dpo_public.pem`` (the file the service seals to),
so a wrong passphrase, a wrong file, too few shares or another vault's key is refused before
anything is opened. A whole ``dpo_private.pem`` (a vault not yet moved to shares, see
``scripts/keys.py dpo-reseal``) is still accepted alone while it is the vault's key; once the vault
is re-sealed it no longer is, and is refused like any other key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..keys.dpo_shares import PassphraseFor, looks_like_share_file, unlock
from ..keys.files import KeyMaterialError, load_dpo_public_key, load_private_key
from .errors import Refused


@dataclass(frozen=True)
class DpoKey:
    """The rebuilt private key and, for the audit log, what it was made from (never a secret)."""

    private_key: X25519PrivateKey = field(repr=False)
    source: dict[str, Any]


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_private(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes the opening workers need."""
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _vault_public_key(public_key_path: Path) -> X25519PublicKey:
    try:
        return load_dpo_public_key(Path(public_key_path))
    except KeyMaterialError as exc:
        raise Refused(
            f"cannot check the DPO key against the vault's public key: {exc} "
            "(set IDENTITY_KEYS_DIR to a directory holding the service's dpo_public.pem)"
        ) from exc


def load_dpo_key(path: Path, passphrase: str | None, *, public_key_path: Path) -> X25519PrivateKey:
    """The whole DPO private key at ``path``; ``Refused`` unless it is the one ``public_key_path`` names."""
    try:
        key = load_private_key(Path(path), passphrase)
    except KeyMaterialError as exc:
        raise Refused(f"cannot use the DPO key: {exc}") from exc
    if not isinstance(key, X25519PrivateKey):
        raise Refused(f"{path} is not an X25519 private key (the DPO key is)")
    expected = _vault_public_key(public_key_path)
    expected_raw = expected.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if _raw_public(key) != expected_raw:
        raise Refused(f"{path} is not the private half of {public_key_path}: wrong DPO key")
    return key


def load_dpo_private_key(paths: Path | Sequence[Path], *, passphrase: str | None,
                         passphrase_for: PassphraseFor | None, public_key_path: Path) -> DpoKey:
    """The DPO private key from share files (``threshold`` distinct shares of one set) or one whole key.

    Each share's passphrase is ``passphrase`` when given (one for all: development and tests, from
    IDENTITY_DPO_KEY_PASSPHRASE), else ``passphrase_for(share)`` (its holder, at a prompt);
    development shares need none. ``Refused`` says why, naming files, never a secret.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise Refused("no DPO key given: pass --dpo-key once per share holder")
    shares = [p for p in paths if looks_like_share_file(p)]
    if not shares:
        if len(paths) > 1:
            raise Refused("give the DPO key's share files (one --dpo-key per holder), or one whole key alone")
        return DpoKey(load_dpo_key(paths[0], passphrase, public_key_path=public_key_path), {"form": "whole key"})
    if len(shares) != len(paths):
        others = ", ".join(str(p) for p in paths if p not in shares)
        raise Refused(f"{others}: not a DPO share file (give share files only, one --dpo-key per holder)")
    expected = _vault_public_key(public_key_path)
    ask = (lambda _share: passphrase) if passphrase else (passphrase_for or (lambda _share: None))
    try:
        unlocked = unlock(paths, expected, ask)
    except KeyMaterialError as exc:
        raise Refused(f"cannot use the DPO key: {exc}") from exc
    return DpoKey(unlocked.private_key, unlocked.audit_details())
