"""Who vouches for an audit record: Ed25519 signatures over the record's hash, and the keys trusted to check them.

Every record names its ``signer`` (inside the hashed fields, so it cannot be relabelled) and carries
``signature``, an Ed25519 signature over ``identity-audit-record/v1:<hash>``. The prefix separates it
from everything else the same keys sign (an officer's four-eyes statements are JSON objects).

Two kinds of signer:

- ``service:<id>``: the service audit key (``IDENTITY_KEYS_DIR/audit_signing.pem``, encrypted with
  IDENTITY_KEYS_PASSPHRASE like the signing keys), held where the service and the operator scripts run.
  ``<id>`` is the first 16 hex digits of the SHA-256 of the raw public key.
- ``officer:<name>``: an officer's own Ed25519 key (the one enrolled for four-eyes approval). It vouches
  only for records whose ``actor`` is that officer: an officer cannot sign other people's actions.

Checking needs public material only: ``audit_signing.pub.pem`` (and any retired audit public keys)
and a callable that returns an officer's public key by name.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .keys.files import KeyMaterialError, KeyPaths, load_private_key, load_public_key_file, pem_is_encrypted
from .verify.b64 import b64url_decode, b64url_encode

MESSAGE_PREFIX = b"identity-audit-record/v1:"
SERVICE, OFFICER = "service", "officer"

OfficerKeyLookup = Callable[[str], "Ed25519PublicKey | None"]
"""An officer's public key by name, or None if there is no such officer (the ``verify`` hook)."""


def signed_message(record_hash: str) -> bytes:
    """The exact bytes a signer signs for the record with hash ``record_hash``."""
    return MESSAGE_PREFIX + record_hash.encode("ascii")


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw public key (names the key; never trusted on its own)."""
    return hashlib.sha256(raw_public(public_key)).hexdigest()[:16]


def service_signer_id(public_key: Ed25519PublicKey) -> str:
    return f"{SERVICE}:{key_id(public_key)}"


def officer_signer_id(officer: str) -> str:
    return f"{OFFICER}:{officer}"


class AuditSigner(Protocol):
    """Signs audit records. ``signer_id`` goes into each record before it is hashed."""

    @property
    def signer_id(self) -> str: ...

    def vouches_for(self, actor: str) -> bool:
        """Whether this signer may sign a record naming ``actor``."""

    def sign(self, record_hash: str) -> str:
        """The base64url signature over ``signed_message(record_hash)``."""


@dataclass(frozen=True)
class ServiceSigner:
    """The service audit key: signs any record (the service and operator scripts write them)."""

    private_key: Ed25519PrivateKey = field(repr=False)

    @property
    def signer_id(self) -> str:
        return service_signer_id(self.private_key.public_key())

    def vouches_for(self, actor: str) -> bool:
        return True

    def sign(self, record_hash: str) -> str:
        return b64url_encode(self.private_key.sign(signed_message(record_hash)))


@dataclass(frozen=True)
class OfficerSigner:
    """An officer's own key: signs only records whose actor is that officer."""

    officer: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @property
    def signer_id(self) -> str:
        return officer_signer_id(self.officer)

    def vouches_for(self, actor: str) -> bool:
        return actor == self.officer

    def sign(self, record_hash: str) -> str:
        return b64url_encode(self.private_key.sign(signed_message(record_hash)))


def load_service_signer(paths: KeyPaths, passphrase: str | None) -> ServiceSigner:
    """The service audit key of a keys directory; ``KeyMaterialError`` names what is wrong."""
    if not paths.audit_signing.exists():
        raise KeyMaterialError(
            f"{paths.audit_signing} is missing: run `python scripts/keys.py init --if-absent` to create "
            "the audit signing key"
        )
    key = load_private_key(paths.audit_signing, passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMaterialError(f"{paths.audit_signing} is not an Ed25519 private key")
    if paths.audit_public.exists() and raw_public(load_public_key(paths.audit_public)) != raw_public(key.public_key()):
        raise KeyMaterialError(f"{paths.audit_public} is not the public half of {paths.audit_signing}")
    return ServiceSigner(key)


def load_officer_signer(officer: str, path: Path, passphrase: str | None) -> OfficerSigner:
    """An officer's Ed25519 private key (PKCS#8, as ``four_eyes.py keygen`` writes it) as an audit signer."""
    key = load_private_key(Path(path), passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMaterialError(f"{path} is not an Ed25519 private key (officer keys are)")
    return OfficerSigner(officer, key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM), e.g. ``audit_signing.pub.pem``."""
    key = load_public_key_file(path)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyMaterialError(f"{path} is not an Ed25519 public key")
    return key


def audit_key_production_problems(paths: KeyPaths) -> list[str]:
    """Why the audit key must not serve production (empty when it may)."""
    if paths.audit_signing.exists() and not pem_is_encrypted(paths.audit_signing):
        return [f"{paths.audit_signing} is not encrypted with IDENTITY_KEYS_PASSPHRASE"]
    return []


class TrustedKeys:
    """The public keys an auditor trusts: service audit keys by id, officers' keys through a lookup.

    :param service_keys: the service audit public keys (the current one and any retired ones).
    :param officer_key: returns an officer's public key by name, or None; without it, officer-signed
        records count as signed by an unknown key.
    """

    def __init__(self, service_keys: list[Ed25519PublicKey] | tuple[Ed25519PublicKey, ...] = (), *,
                 officer_key: OfficerKeyLookup | None = None) -> None:
        self._service: dict[str, Ed25519PublicKey] = {service_signer_id(k): k for k in service_keys}
        self._officer_key = officer_key
        self._officers: dict[str, Ed25519PublicKey | None] = {}

    def __repr__(self) -> str:
        return f"TrustedKeys(service={sorted(self._service)}, officers={'yes' if self._officer_key else 'no'})"

    def _key_for(self, signer: str) -> Ed25519PublicKey | None:
        kind, _, name = signer.partition(":")
        if kind == SERVICE:
            return self._service.get(signer)
        if kind == OFFICER and self._officer_key is not None and name:
            if name not in self._officers:
                self._officers[name] = self._officer_key(name)
            return self._officers[name]
        return None

    def problem_with(self, record: Mapping[str, Any]) -> str | None:
        """Why ``record``'s signature is not acceptable (None when it is). Its hash is checked elsewhere."""
        seq, signer, signature = record.get("seq"), record.get("signer"), record.get("signature")
        if not signer or not signature:
            return f"record {seq} is not signed"
        kind, _, name = str(signer).partition(":")
        if kind == OFFICER and record.get("actor") != name:
            return f"record {seq} is signed by officer {name} but names actor {record.get('actor')!r}"
        key = self._key_for(str(signer))
        if key is None:
            what = f"officer {name}" if kind == OFFICER else f"key {signer}"
            return f"record {seq} is signed by an unknown {what} (not among the trusted audit keys)"
        try:
            key.verify(b64url_decode(str(signature)), signed_message(str(record.get("hash"))))
        except (InvalidSignature, ValueError, binascii.Error):
            return f"record {seq} has a bad signature (signer {signer})"
        return None
