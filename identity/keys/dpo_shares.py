"""The DPO key held by several people: k-of-n share files, never the whole private key on disk.

Making a key set (``create_key_set``): a fresh X25519 key pair; a random 128-bit wrapping key split
with Shamir's scheme (pycryptodome's ``Shamir``, over GF(2^128)) into one share per holder; the
private key encrypted under the wrapping key (AES-GCM from ``cryptography``). Each share file holds
the set's id, its index, the threshold, the public key's SHA-256 fingerprint, the encrypted private
key (the same in every file of the set) and its own share, encrypted under its holder's passphrase
(Argon2id, then AES-GCM, the file's header as associated data). Fewer than ``threshold`` shares
say nothing about the wrapping key, so one holder's file and passphrase, with a copy of the
database, open nothing.

``unlock`` is the reverse, on the DPO's machine: it reads the files, counts each share once,
refuses files of another set or of another vault's key, asks for the passphrases of the shares it
needs, combines them and checks the result against the vault's public key. The private key exists
only in memory, for one run.

Development key sets (``scripts/keys.py init`` outside production) encrypt every share under the
published ``DEVELOPMENT_PASSPHRASE`` with the smallest KDF cost and say so in the file, so tests and
demos run unattended; such a file protects nothing, and production never uses one (its key set is
made offline by ``scripts/keys.py dpo-create``).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from ..verify.b64 import b64url_decode, b64url_encode
from .files import KeyMaterialError, write_private_file

FORMAT = "identity-dpo-share/1"
SHARE_PREFIX = "dpo_share_"
DEFAULT_THRESHOLD, DEFAULT_SHARES = 2, 3
MAX_SHARES = 16
DEVELOPMENT_PASSPHRASE = "development-only: this share protects nothing"
HOLDER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
NONCE_BYTES, SALT_BYTES, WRAPPING_KEY_BYTES = 12, 16, 16


@dataclass(frozen=True)
class KdfCost:
    """Argon2id parameters, stored in each share file."""

    iterations: int
    lanes: int
    memory_kib: int


PASSPHRASE_KDF = KdfCost(iterations=3, lanes=4, memory_kib=64 * 1024)  # RFC 9106 §4, second recommended option
DEVELOPMENT_KDF = KdfCost(iterations=1, lanes=1, memory_kib=8)  # the passphrase is public: cost buys nothing
KDF_LIMITS = {"iterations": (1, 16), "lanes": (1, 16), "memory_kib": (8, 1024 * 1024)}


@dataclass(frozen=True)
class Holder:
    """One share holder: a name (for prompts and the audit log) and the passphrase of their file."""

    name: str
    passphrase: str = field(repr=False)


@dataclass(frozen=True)
class KeySet:
    """A new key set: its public key and one share file per holder (``(file name, content)``)."""

    public_key: X25519PublicKey
    threshold: int
    set_id: str
    holders: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...] = field(repr=False)


@dataclass(frozen=True)
class ShareFile:
    """One share file as read from disk, still locked by its holder's passphrase."""

    path: Path
    set_id: str
    index: int
    threshold: int
    count: int
    holder: str
    fingerprint: str
    development: bool
    kdf: KdfCost
    salt: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    sealed_share: bytes = field(repr=False)
    content: bytes = field(repr=False)

    def describe(self) -> str:
        return f"{self.path} (share {self.index} of {self.count}, holder {self.holder})"


@dataclass(frozen=True)
class Unlocked:
    """The reconstructed private key and the shares that made it (for the audit record)."""

    private_key: X25519PrivateKey = field(repr=False)
    set_id: str
    used: tuple[ShareFile, ...]

    def audit_details(self) -> dict[str, Any]:
        return {"form": "shares", "set": self.set_id, "threshold": self.used[0].threshold,
                "shares": [{"index": s.index, "holder": s.holder} for s in self.used]}


PassphraseFor = Callable[[ShareFile], "str | None"]


def fingerprint(public_key: X25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: names a DPO key in files, prompts and the audit log."""
    return hashlib.sha256(public_key.public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)).hexdigest()


def share_file_name(index: int) -> str:
    return f"{SHARE_PREFIX}{index}.json"


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _set_header(set_id: str, threshold: int, count: int, fp: str) -> dict[str, Any]:
    return {"format": FORMAT, "set": set_id, "threshold": threshold, "shares": count, "public_key_sha256": fp}


def _share_header(set_header: dict[str, Any], index: int, holder: str, development: bool, kdf: KdfCost,
                  salt: bytes) -> dict[str, Any]:
    return {**set_header, "index": index, "holder": holder, "development": development,
            "kdf": {"name": "argon2id", "salt": b64url_encode(salt), "iterations": kdf.iterations, "lanes": kdf.lanes,
                    "memory_kib": kdf.memory_kib}}


def _passphrase_key(passphrase: str, salt: bytes, kdf: KdfCost) -> bytes:
    return Argon2id(salt=salt, length=32, iterations=kdf.iterations, lanes=kdf.lanes,
                    memory_cost=kdf.memory_kib).derive(passphrase.encode("utf-8"))


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


# -- making a key set --------------------------------------------------------------------------


def check_holders(holders: Sequence[Holder], threshold: int) -> None:
    """``KeyMaterialError`` unless 2 ≤ threshold ≤ holders ≤ 16, with distinct valid names and passphrases."""
    if not 2 <= threshold <= len(holders) <= MAX_SHARES:
        raise KeyMaterialError(f"a DPO key set needs 2 ≤ threshold ≤ holders ≤ {MAX_SHARES} "
                               f"(got threshold {threshold}, {len(holders)} holders): one share must never be enough")
    names = [h.name for h in holders]
    bad = [n for n in names if not HOLDER_PATTERN.match(n)]
    if bad:
        raise KeyMaterialError(f"holder names are 1-64 letters, digits and ._@- (got {bad[0]!r})")
    if len(set(names)) != len(names):
        raise KeyMaterialError("each holder must be named once")
    if any(not h.passphrase for h in holders):
        raise KeyMaterialError("every share needs a passphrase")


def create_key_set(holders: Sequence[Holder], threshold: int, *, development: bool = False) -> KeySet:
    """A new DPO key pair whose private key exists only as ``len(holders)`` shares, ``threshold`` to open.

    ``development``: every share under ``DEVELOPMENT_PASSPHRASE`` at the smallest KDF cost (holders'
    passphrases are ignored).
    """
    if development:
        holders = [Holder(h.name, DEVELOPMENT_PASSPHRASE) for h in holders]
    check_holders(holders, threshold)
    key = X25519PrivateKey.generate()
    public_key = key.public_key()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    wrapping_key = secrets.token_bytes(WRAPPING_KEY_BYTES)
    set_id = secrets.token_hex(8)
    set_header = _set_header(set_id, threshold, len(holders), fingerprint(public_key))
    wrapped = _seal(wrapping_key, raw, _canonical(set_header))
    kdf = DEVELOPMENT_KDF if development else PASSPHRASE_KDF
    files = []
    for (index, share), holder in zip(Shamir.split(threshold, len(holders), wrapping_key), holders):
        salt = secrets.token_bytes(SALT_BYTES)
        header = _share_header(set_header, index, holder.name, development, kdf, salt)
        sealed = _seal(_passphrase_key(holder.passphrase, salt, kdf), share, _canonical(header))
        document = {**header, "private_key": b64url_encode(wrapped), "share": b64url_encode(sealed)}
        files.append((share_file_name(index), (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()))
    return KeySet(public_key, threshold, set_id, tuple(h.name for h in holders), tuple(files))


def write_key_set(directory: Path, key_set: KeySet) -> list[Path]:
    """Write the share files (mode 0600) into ``directory``; refuse if any exists."""
    paths = [Path(directory) / name for name, _ in key_set.files]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise KeyMaterialError(f"{existing[0]} already exists; refusing to overwrite it")
    for path, (_, content) in zip(paths, key_set.files):
        write_private_file(path, content)
    return paths


# -- reading and unlocking ---------------------------------------------------------------------


def looks_like_share_file(path: Path) -> bool:
    """Whether ``path`` starts like a share file (a JSON object) rather than a PEM key."""
    try:
        with open(path, "rb") as handle:
            return handle.read(64).lstrip().startswith(b"{")
    except OSError:
        return False


def _int_in(doc: dict[str, Any], name: str, low: int, high: int, path: Path) -> int:
    value = doc.get(name)
    if type(value) is not int or not low <= value <= high:
        raise KeyMaterialError(f"{path} is not a DPO share file: {name} must be a whole number in {low}..{high}")
    return value


def read_share(path: Path) -> ShareFile:
    """Parse one share file, checking every field; ``KeyMaterialError`` names the file and the problem."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(content)
    except ValueError as exc:
        raise KeyMaterialError(f"{path} is not a DPO share file (not JSON)") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyMaterialError(f"{path} is not a DPO share file (format {FORMAT!r} expected)")
    count = _int_in(doc, "shares", 2, MAX_SHARES, path)
    threshold = _int_in(doc, "threshold", 2, count, path)
    index = _int_in(doc, "index", 1, count, path)
    kdf_doc = doc.get("kdf")
    if not isinstance(kdf_doc, dict) or kdf_doc.get("name") != "argon2id":
        raise KeyMaterialError(f"{path} is not a DPO share file: kdf must be argon2id")
    kdf = KdfCost(**{name: _int_in(kdf_doc, name, *limits, path) for name, limits in KDF_LIMITS.items()})
    if kdf.memory_kib < 8 * kdf.lanes:
        raise KeyMaterialError(f"{path} is not a DPO share file: argon2id needs 8 KiB of memory per lane")
    text_fields = {"set": r"[0-9a-f]{16}", "public_key_sha256": r"[0-9a-f]{64}", "holder": HOLDER_PATTERN.pattern[1:-1],
                   "private_key": r"[A-Za-z0-9_-]{1,200}", "share": r"[A-Za-z0-9_-]{1,200}"}
    for name, pattern in text_fields.items():
        if not isinstance(doc.get(name), str) or not re.fullmatch(pattern, doc[name]):
            raise KeyMaterialError(f"{path} is not a DPO share file: {name} is missing or malformed")
    if type(doc.get("development")) is not bool or not isinstance(kdf_doc.get("salt"), str):
        raise KeyMaterialError(f"{path} is not a DPO share file: development or kdf.salt is malformed")
    try:
        salt, wrapped, sealed = (b64url_decode(kdf_doc["salt"]), b64url_decode(doc["private_key"]), b64url_decode(doc["share"]))
    except (ValueError, binascii.Error) as exc:
        raise KeyMaterialError(f"{path} is not a DPO share file: a field is not base64url") from exc
    if len(salt) < SALT_BYTES or len(wrapped) != NONCE_BYTES + 32 + 16 or len(sealed) != NONCE_BYTES + 16 + 16:
        raise KeyMaterialError(f"{path} is not a DPO share file: a field has the wrong length")
    return ShareFile(path=path, set_id=doc["set"], index=index, threshold=threshold, count=count, holder=doc["holder"],
                     fingerprint=doc["public_key_sha256"], development=doc["development"], kdf=kdf, salt=salt,
                     wrapped_key=wrapped, sealed_share=sealed, content=content)


def _distinct(shares: Sequence[ShareFile], expected_fp: str | None) -> list[ShareFile]:
    """One file per share, all of one set and of the expected key; refusals name the files."""
    first = shares[0]
    for share in shares:
        if expected_fp is not None and share.fingerprint != expected_fp:
            raise KeyMaterialError(f"{share.describe()} is a share of another DPO key (public key SHA-256 "
                                   f"{share.fingerprint[:16]}…), not of this vault's dpo_public.pem "
                                   f"({expected_fp[:16]}…)")
        if share.set_id != first.set_id:
            raise KeyMaterialError(f"{share.path} and {first.path} belong to different DPO key sets "
                                   f"({share.set_id} and {first.set_id}): give shares of one set")
        if (share.threshold, share.count, share.wrapped_key) != (first.threshold, first.count, first.wrapped_key):
            raise KeyMaterialError(f"{share.path} disagrees with {first.path} about their key set: a file was altered")
    distinct: dict[int, ShareFile] = {}
    for share in shares:
        seen = distinct.get(share.index)
        if seen is None:
            distinct[share.index] = share
        elif seen.content != share.content:
            raise KeyMaterialError(f"{seen.path} and {share.path} both claim share {share.index} but differ: "
                                   "a file was altered")
    if len(distinct) < first.threshold:
        repeated = " (the same share was given more than once; it counts once)" if len(shares) > len(distinct) else ""
        raise KeyMaterialError(f"{first.threshold} different shares of DPO key set {first.set_id} are needed to open "
                               f"e-mails, {len(distinct)} given{repeated}: one holder alone opens nothing")
    return list(distinct.values())[:first.threshold]


def _unlock_share(share: ShareFile, passphrase_for: PassphraseFor) -> bytes:
    passphrase = DEVELOPMENT_PASSPHRASE if share.development else passphrase_for(share)
    if not passphrase:
        raise KeyMaterialError(f"no passphrase for {share.describe()}: its holder types it at the prompt "
                               "(run on a terminal)")
    header = _share_header(_set_header(share.set_id, share.threshold, share.count, share.fingerprint), share.index,
                           share.holder, share.development, share.kdf, share.salt)
    try:
        return _open(_passphrase_key(passphrase, share.salt, share.kdf), share.sealed_share, _canonical(header))
    except InvalidTag as exc:
        raise KeyMaterialError(f"cannot unlock {share.describe()}: wrong passphrase (or the file was altered)") from exc


def unlock(paths: Sequence[Path], expected_public: X25519PublicKey | None, passphrase_for: PassphraseFor) -> Unlocked:
    """The DPO private key from ``threshold`` distinct shares among ``paths``; ``KeyMaterialError`` otherwise.

    Files are taken in the order given; only the first ``threshold`` distinct shares are unlocked
    (and only their passphrases asked for). ``expected_public`` is the vault's key; None accepts the
    key the files name (an old key set being retired), still checked against what they rebuild.
    """
    if not paths:
        raise KeyMaterialError("no DPO share files given")
    expected_fp = None if expected_public is None else fingerprint(expected_public)
    shares = _distinct([read_share(p) for p in paths], expected_fp)
    first = shares[0]
    wrapping_key = Shamir.combine([(s.index, _unlock_share(s, passphrase_for)) for s in shares])
    try:
        raw = _open(wrapping_key, first.wrapped_key,
                    _canonical(_set_header(first.set_id, first.threshold, first.count, first.fingerprint)))
    except InvalidTag as exc:
        raise KeyMaterialError(f"the shares of DPO key set {first.set_id} do not combine into its key: "
                               "a share file was altered") from exc
    key = X25519PrivateKey.from_private_bytes(raw)
    if fingerprint(key.public_key()) != first.fingerprint:
        raise KeyMaterialError(f"DPO key set {first.set_id} does not hold the key its files name: a file was altered")
    return Unlocked(key, first.set_id, tuple(shares))
