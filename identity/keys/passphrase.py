"""Changing the passphrase of the keys directory (``scripts/keys.py passphrase``).

``IDENTITY_KEYS_PASSPHRASE`` encrypts the private keys of the keys directory (PKCS#8, the signing keys,
the self-audience key and the audit signing key); the pepper and the pairwise subject key are plain
0600 files. A passphrase that leaked, or one too short, is replaced here: every protected key is
opened with the current passphrase and written again under the new one.

Each file is replaced whole (a new file beside it, synced, then renamed over it), so a key file is never
half written. A run cut short leaves some files under the new passphrase and some under the old: the
same command again finishes the job, since a file that the new passphrase already opens is left as it
is. Until then the service cannot load the files the run changed (run it with the service stopped, or
restart every instance with the new passphrase right after).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import KeyMaterialError, KeyPaths, load_private_key, private_key_pem
from .lifecycle import locked

MIN_PRODUCTION_PASSPHRASE = 16  # characters; `openssl rand -base64 24` gives 32


@dataclass(frozen=True)
class PassphraseChange:
    """What ``change_passphrase`` did: files re-encrypted now, and files a cut-short run had done already."""

    changed: list[Path]
    already: list[Path]


def passphrase_problem(passphrase: str | None, *, production: bool) -> str | None:
    """Why ``passphrase`` may not protect new key files (None: it may)."""
    if not passphrase:
        return "the new passphrase is empty"
    if production and len(passphrase) < MIN_PRODUCTION_PASSPHRASE:
        return (f"in production the keys passphrase has at least {MIN_PRODUCTION_PASSPHRASE} characters "
                "(e.g. `openssl rand -base64 24`)")
    return None


def protected_files(paths: KeyPaths) -> list[Path]:
    """The private keys the passphrase encrypts, as they are on disk now."""
    files = sorted(paths.signing_dir.glob("*.pem")) if paths.signing_dir.is_dir() else []
    files += [path for path in (paths.self_encryption, paths.audit_signing) if path.exists()]
    return files


def change_passphrase(root: Path, *, current: str | None, new: str) -> PassphraseChange:
    """Re-encrypt every protected key in ``root`` from ``current`` (None: unencrypted) to ``new``.

    Every file is opened before any is written: a wrong ``current`` changes nothing. Raises
    ``KeyMaterialError`` naming the first file neither passphrase opens.
    """
    paths = KeyPaths(root)
    with locked(paths):
        files = protected_files(paths)
        if not files:
            raise KeyMaterialError(f"{root} holds no private key to re-encrypt")
        opened: list[tuple[Path, Any]] = []
        already: list[Path] = []
        for path in files:
            try:
                opened.append((path, load_private_key(path, current)))
            except KeyMaterialError:
                try:
                    load_private_key(path, new)
                except KeyMaterialError:
                    raise KeyMaterialError(f"cannot open {path} with the current passphrase; nothing was "
                                           "changed") from None
                already.append(path)  # done by a run that was cut short
        for path, key in opened:
            _replace(path, private_key_pem(key, new))
    return PassphraseChange(changed=[path for path, _ in opened], already=already)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (0600, synced, renamed over it, the directory synced)."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)  # left by a run cut short before its rename
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
