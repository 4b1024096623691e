"""Key material: files on disk (``files``), their creation and rotation (``lifecycle``) and the
running service's keyring (``keyring``)."""

from __future__ import annotations

from .files import KeyMaterialError, KeyPaths
from .keyring import Keyring, SigningKey
from .lifecycle import describe, ensure_audit_key, ensure_pairwise_key, init_keys, rotate_signing_keys, thumbprint

__all__ = [
    "KeyMaterialError", "KeyPaths", "Keyring", "SigningKey", "describe", "ensure_audit_key", "ensure_pairwise_key",
    "init_keys",
    "rotate_signing_keys", "thumbprint",
]
