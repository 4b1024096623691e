"""Officers who may file and approve breach resolutions, each with an Ed25519 signing key.

An officer makes a key pair with ``scripts/four_eyes.py keygen`` on their own machine: the private
key (PKCS#8, encrypted with their passphrase, mode 0600) never leaves it; the public key is
enrolled in the store's officer registry (``enrol``, audited). Signatures are checked against the
registry, never against a key carried inside a request. One key belongs to one officer (the
fingerprint is unique), so nobody can approve their own request under a second name with the
same key; enrolments and revocations are themselves in the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..keys.files import KeyMaterialError, load_private_key, private_key_pem, write_private_file, write_public_file
from ..store import Collection, DuplicateKeyError, Store
from .errors import Refused

ACTIVE, REVOKED = "active", "revoked"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

OFFICERS = Collection(
    name="breach_officers",
    key="officer",
    fields={
        "officer": str,
        "public_key": str,
        "fingerprint": str,
        "enrolled_at": int,
        "enrolled_by": str,
        "status": str,
        "status_changed_at": int,
    },
    unique=("fingerprint",),
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: what officers compare out of band."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def check_name(name: str | None) -> str:
    if not name or not NAME_PATTERN.fullmatch(name):
        raise Refused("an officer name is 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class NewKey:
    private_path: Path
    public_path: Path
    fingerprint: str


def generate_key(path: Path, passphrase: str | None) -> NewKey:
    """A new Ed25519 key: ``path`` (private, 0600) and ``path.pub`` (public PEM); never overwrites."""
    key = Ed25519PrivateKey.generate()
    public_path = path.with_name(path.name + ".pub")
    try:
        write_private_file(path, private_key_pem(key, passphrase))  # type: ignore[arg-type]
        write_public_file(public_path, key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    except KeyMaterialError as exc:
        raise Refused(str(exc)) from exc
    return NewKey(path, public_path, fingerprint(key.public_key()))


def load_signing_key(path: Path, passphrase: str | None) -> Ed25519PrivateKey:
    try:
        key = load_private_key(Path(path), passphrase)
    except KeyMaterialError as exc:
        raise Refused(f"cannot use the officer key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise Refused(f"{path} is not an Ed25519 private key (officer keys are)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read an officer public key from {path}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise Refused(f"{path} is not an Ed25519 public key")
    return key


class Registry:
    """The officers' public keys in the store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def enrol(self, officer: str, key: Ed25519PublicKey, *, by: str) -> dict[str, Any]:
        now = int(self._clock())
        doc = {"officer": check_name(officer), "public_key": b64(raw_public(key)), "fingerprint": fingerprint(key),
               "enrolled_at": now, "enrolled_by": by, "status": ACTIVE, "status_changed_at": now}
        try:
            self._store.insert(OFFICERS, doc)
        except DuplicateKeyError as exc:
            raise Refused(f"officer {officer} or this key is already enrolled (names and keys are never reused)") from exc
        return doc

    def revoke(self, officer: str) -> None:
        if not self._store.update(OFFICERS, {"officer": officer, "status": ACTIVE},
                                  {"status": REVOKED, "status_changed_at": int(self._clock())}):
            raise Refused(f"officer {officer} is not an active enrolled officer")

    def public_key(self, officer: str) -> tuple[Ed25519PublicKey, str]:
        """The active officer's registered key and fingerprint; ``Refused`` otherwise."""
        doc = self._store.get(OFFICERS, officer)
        if doc is None or doc["status"] != ACTIVE:
            raise Refused(f"{officer} is not an active enrolled officer")
        key = Ed25519PublicKey.from_public_bytes(unb64(doc["public_key"]))
        if fingerprint(key) != doc["fingerprint"]:
            raise Refused(f"the registry entry of {officer} is inconsistent")
        return key, doc["fingerprint"]

    def all(self) -> list[dict[str, Any]]:
        return list(self._store.find(OFFICERS, {}))

    def check_signature(self, officer: str, signature: str | None, payload: bytes) -> str:
        """Verify ``signature`` by ``officer``'s registered key; return the key's fingerprint."""
        key, print_ = self.public_key(officer)
        try:
            key.verify(unb64(signature or ""), payload)
        except (InvalidSignature, ValueError) as exc:
            raise Refused(f"the signature of {officer} does not match: the request was altered") from exc
        return print_
