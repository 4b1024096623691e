"""Officers' key material: Ed25519 key pairs, names, fingerprints and proofs of possession.

An officer makes a key pair with ``scripts/four_eyes.py keygen`` on their own machine: the private
key (PKCS#8, encrypted with their passphrase, mode 0600) never leaves it. Beside it go the public
key (``PATH.pub``) and a proof of possession (``PATH.proof``: the officer's name and public key,
signed with the private key), which the officers who enrol them check. The registry of enrolled
officers is ``registry``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..audit_signing import raw_public
from ..keys.files import KeyMaterialError, load_private_key, private_key_pem, write_private_file, write_public_file
from ..verify.b64 import b64url_decode, b64url_encode
from .errors import Refused
from .statements import KEY_CLAIM, key_claim

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PROOF_SUFFIX = ".proof"


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: what officers compare out of band."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def check_name(name: str | None) -> str:
    if not name or not NAME_PATTERN.fullmatch(name):
        raise Refused("an officer name is 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
    return name


def public_text(key: Ed25519PublicKey) -> str:
    """How the registry and the statements write a public key (raw bytes, base64url)."""
    return b64url_encode(raw_public(key))


def public_from_text(text: str) -> Ed25519PublicKey:
    try:
        if not isinstance(text, str):  # a store may hand back bytes: refused, as any non-text
            raise TypeError("not text")
        return Ed25519PublicKey.from_public_bytes(b64url_decode(text))
    except (ValueError, TypeError) as exc:
        raise Refused("a stored officer public key is not an Ed25519 key") from exc


def verify(key: Ed25519PublicKey, signature: str | None, payload: bytes) -> bool:
    try:
        key.verify(b64url_decode(signature or ""), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NewKey:
    private_path: Path
    public_path: Path
    proof_path: Path
    fingerprint: str


def generate_key(path: Path, passphrase: str | None, *, officer: str) -> NewKey:
    """A new Ed25519 key: ``path`` (private, 0600), ``path.pub`` (public PEM) and ``path.proof``.

    Never overwrites a file.
    """
    check_name(officer)
    key = Ed25519PrivateKey.generate()
    public_path, proof_path = path.with_name(path.name + ".pub"), path.with_name(path.name + PROOF_SUFFIX)
    try:
        for existing in (path, public_path, proof_path):
            if existing.exists():
                raise KeyMaterialError(f"{existing} already exists; refusing to overwrite it")
        write_private_file(path, private_key_pem(key, passphrase))
        write_public_file(public_path, key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        write_public_file(proof_path, proof_document(officer, key))
    except KeyMaterialError as exc:
        raise Refused(str(exc)) from exc
    return NewKey(path, public_path, proof_path, fingerprint(key.public_key()))


def sign_claim(officer: str, key: Ed25519PrivateKey) -> str:
    """The proof of possession: ``key`` signs "this key is mine, for ``officer``"."""
    return b64url_encode(key.sign(key_claim(officer, public_text(key.public_key()))))


def proof_document(officer: str, key: Ed25519PrivateKey) -> bytes:
    public = key.public_key()
    return json.dumps({"type": KEY_CLAIM, "v": 1, "officer": officer, "public_key": public_text(public),
                       "fingerprint": fingerprint(public), "signature": sign_claim(officer, key)},
                      indent=2, sort_keys=True).encode("ascii") + b"\n"


def read_proof(path: Path, officer: str, key: Ed25519PublicKey) -> str:
    """The proof-of-possession signature in ``path``, if it is ``officer``'s for ``key``."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read a proof of possession from {path}") from exc
    if not isinstance(document, dict) or document.get("type") != KEY_CLAIM:
        raise Refused(f"{path} is not an officer's proof of possession (keygen writes PATH{PROOF_SUFFIX})")
    if document.get("officer") != officer or document.get("public_key") != public_text(key):
        raise Refused(f"{path} is not the proof for officer {officer} and this public key")
    signature = document.get("signature")
    if not isinstance(signature, str) or not verify(key, signature, key_claim(officer, public_text(key))):
        raise Refused(f"the proof of possession in {path} is not signed by that key")
    return signature


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
