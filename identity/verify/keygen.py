"""Audience key pairs: the downstream service keeps the private key, the issuer gets the public one.

``generate_audience_key(out_dir)`` writes ``audience-<kid>.key.pem`` (PKCS#8, mode 0600, encrypted
when a passphrase is given) and ``audience-<kid>.pub.pem`` (SubjectPublicKeyInfo, mode 0644), and
returns the ``kid``: the RFC 7638 thumbprint the issuer will put in every token's JWE header.
Files are named by ``kid`` so a rotation never overwrites the key still in use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ConfigurationError
from .keys import thumbprint

ALLOWED_BITS = (2048, 3072, 4096)
DEFAULT_BITS = 3072


@dataclass(frozen=True)
class AudienceKeyFiles:
    """What ``generate_audience_key`` wrote."""

    kid: str
    private_key: Path
    public_key: Path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (O_EXCL: never overwrite, never a wider window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may have narrowed the mode; make it exact
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def generate_audience_key(
    out_dir: str | os.PathLike[str],
    *,
    bits: int = DEFAULT_BITS,
    passphrase: str | None = None,
) -> AudienceKeyFiles:
    """Generate an RSA key pair for a downstream audience and write it into ``out_dir``.

    :param out_dir: created (mode 0700) if missing
    :param bits: 2048, 3072 (default) or 4096
    :param passphrase: encrypts the private key PEM when given
    :raises ConfigurationError: bad ``bits``, or a file for this ``kid`` already exists
    """
    if bits not in ALLOWED_BITS:
        raise ConfigurationError(f"bits must be one of {', '.join(map(str, ALLOWED_BITS))}")
    directory = Path(out_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    kid = thumbprint(key)
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    files = AudienceKeyFiles(
        kid=kid,
        private_key=directory / f"audience-{kid}.key.pem",
        public_key=directory / f"audience-{kid}.pub.pem",
    )
    try:
        _write_new(files.private_key, private_pem, 0o600)
        _write_new(files.public_key, public_pem, 0o644)
    except FileExistsError as exc:
        raise ConfigurationError(f"{exc.filename} already exists; refusing to overwrite it") from None
    return files
