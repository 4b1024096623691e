"""The DPO's private key: loaded from the DPO's own medium, and checked against the vault's public key.

The check compares the key's public half with ``dpo_public.pem`` (the file the service seals to),
so a wrong passphrase, a wrong file or another vault's key is refused before anything is opened.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..keys.files import KeyMaterialError, load_dpo_public_key, load_private_key
from .errors import Refused


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_private(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes the opening workers need."""
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def load_dpo_key(path: Path, passphrase: str | None, *, public_key_path: Path) -> X25519PrivateKey:
    """The DPO private key at ``path``; ``Refused`` unless it is the one ``public_key_path`` names."""
    try:
        key = load_private_key(Path(path), passphrase)
    except KeyMaterialError as exc:
        raise Refused(f"cannot use the DPO key: {exc}") from exc
    if not isinstance(key, X25519PrivateKey):
        raise Refused(f"{path} is not an X25519 private key (the DPO key is)")
    try:
        expected = load_dpo_public_key(Path(public_key_path))
    except KeyMaterialError as exc:
        raise Refused(
            f"cannot check the DPO key against the vault's public key: {exc} "
            "(set IDENTITY_KEYS_DIR to a directory holding the service's dpo_public.pem)"
        ) from exc
    expected_raw = expected.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if _raw_public(key) != expected_raw:
        raise Refused(f"{path} is not the private half of {public_key_path}: wrong DPO key")
    return key
