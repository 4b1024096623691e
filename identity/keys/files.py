"""Key material on disk: file names, PEM reading and writing, the signing-key manifest.

Layout of ``IDENTITY_KEYS_DIR``::

    signing.json              manifest: which signing key is next / active / retired
    signing/<kid>.pem         RSA signing keys, PKCS#8 (encrypted when a passphrase is set)
    blind_index_pepper.key    32 random bytes (base64url) keying the e-mail blind index
    dpo_public.pem            the DPO's X25519 public key: the service seals e-mails to it
    dpo_share_<i>.json        development only: the DPO key's shares (k of n open it); production
                              makes its key set offline and keeps no dpo_* file here but dpo_public.pem
    dpo_private.pem           a whole DPO private key (before the move to shares): never on the service host
    self_encryption.pem       RSA key of the service's own audience ({issuer}/me): it decrypts the
                              access tokens apps present to the self-service endpoints
    audit_signing.pem         Ed25519 key signing audit records (encrypted when a passphrase is set)
    audit_signing.pub.pem     its public half: all ``scripts/audit.py verify`` needs
    pairwise_subject.key      32 random bytes (base64url) keying pairwise subjects; never rotated
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..verify.b64 import b64url_decode, b64url_encode

MANIFEST = "signing.json"
SIGNING_DIR = "signing"
PEPPER = "blind_index_pepper.key"
DPO_PUBLIC = "dpo_public.pem"
DPO_PRIVATE = "dpo_private.pem"
SELF_ENCRYPTION = "self_encryption.pem"
AUDIT_SIGNING = "audit_signing.pem"
AUDIT_PUBLIC = "audit_signing.pub.pem"
PAIRWISE_KEY = "pairwise_subject.key"
ENCRYPTED_PEM_HEADER = b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----"  # split: not a key, a marker
PEPPER_BYTES = 32


class KeyMaterialError(Exception):
    """Key material is missing, unreadable or refused; the message names the file, never a secret."""


@dataclass(frozen=True)
class KeyPaths:
    """Where each piece of key material lives inside one keys directory."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def signing_dir(self) -> Path:
        return self.root / SIGNING_DIR

    def signing_key(self, kid: str) -> Path:
        if not kid or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in kid):
            raise KeyMaterialError("a signing key id in the manifest is not a base64url thumbprint")
        return self.signing_dir / f"{kid}.pem"

    @property
    def pepper(self) -> Path:
        return self.root / PEPPER

    @property
    def dpo_public(self) -> Path:
        return self.root / DPO_PUBLIC

    @property
    def dpo_private(self) -> Path:
        return self.root / DPO_PRIVATE

    @property
    def self_encryption(self) -> Path:
        return self.root / SELF_ENCRYPTION

    def dpo_secrets(self) -> list[Path]:
        """DPO secret material in this directory: any ``dpo_*`` file but the public key (shares, a whole key)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("dpo_*") if p.name != DPO_PUBLIC)

    @property
    def audit_signing(self) -> Path:
        return self.root / AUDIT_SIGNING

    @property
    def audit_public(self) -> Path:
        return self.root / AUDIT_PUBLIC

    @property
    def pairwise_key(self) -> Path:
        return self.root / PAIRWISE_KEY


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600; refuse to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyMaterialError(f"{path} already exists; refusing to overwrite it") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_public_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0644; refuse to overwrite an existing file."""
    write_private_file(path, data)
    os.chmod(path, 0o644)


def _encryption(passphrase: str | None) -> serialization.KeySerializationEncryption:
    if passphrase:
        return serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
    return serialization.NoEncryption()


def private_key_pem(key: RSAPrivateKey | X25519PrivateKey | Ed25519PrivateKey, passphrase: str | None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _encryption(passphrase))


def pem_is_encrypted(path: Path) -> bool:
    return path.read_bytes().lstrip().startswith(ENCRYPTED_PEM_HEADER)


def load_private_key(path: Path, passphrase: str | None) -> Any:
    """Load a PKCS#8 private key; the passphrase is used only if the file is encrypted."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from exc
    encrypted = data.lstrip().startswith(ENCRYPTED_PEM_HEADER)
    if encrypted and not passphrase:
        raise KeyMaterialError(f"{path} is encrypted and no passphrase was given")
    try:
        return serialization.load_pem_private_key(
            data, password=passphrase.encode("utf-8") if encrypted and passphrase else None
        )
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"cannot load {path}: wrong passphrase or not a PKCS#8 private key") from exc


def load_public_key_file(path: Path) -> PublicKeyTypes:
    """A PEM public key of any algorithm: the caller checks for the one it needs (an ``isinstance`` there,
    since mypy accepts no abstract key class, such as ``X25519PublicKey``, as a ``type[...]`` argument)."""
    try:
        return serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeyMaterialError(f"{path} is not a PEM public key") from exc


def load_dpo_public_key(path: Path) -> X25519PublicKey:
    key = load_public_key_file(path)
    if not isinstance(key, X25519PublicKey):
        raise KeyMaterialError(f"{path} is not an X25519 public key")
    return key


def new_pepper() -> bytes:
    return b64url_encode(secrets.token_bytes(PEPPER_BYTES)).encode("ascii") + b"\n"


def load_pepper(path: Path) -> bytes:
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        pepper = b64url_decode(text)
    except ValueError as exc:
        raise KeyMaterialError(f"{path} is not base64url") from exc
    if len(pepper) < PEPPER_BYTES:
        raise KeyMaterialError(f"{path} holds fewer than {PEPPER_BYTES} bytes")
    return pepper


def is_private_to_owner(path: Path) -> bool:
    """True when neither group nor others may read the file."""
    return not (path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def read_manifest(paths: KeyPaths) -> dict[str, Any]:
    try:
        manifest = json.loads(paths.manifest.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise KeyMaterialError(
            f"{paths.manifest} is missing: run `python scripts/keys.py init` first"
        ) from exc
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"cannot read {paths.manifest}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("keys"), list):
        raise KeyMaterialError(f"{paths.manifest} is not a signing-key manifest")
    return manifest


def write_manifest(paths: KeyPaths, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (write a temporary file, then rename over it)."""
    fd, tmp = tempfile.mkstemp(dir=paths.root, prefix=".signing-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, paths.manifest)
