"""What the development IdP needs to know: its issuer, its one client, and a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


@dataclass(frozen=True)
class DevIdPConfig:
    """``secret`` (32 bytes) derives the signing keys, the code key and the session key."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...]
    secret: bytes = field(repr=False)
    code_ttl: int = 60
    id_token_ttl: int = 300

    @property
    def https(self) -> bool:
        return urlsplit(self.issuer).scheme == "https"

    @property
    def cookie_path(self) -> str:
        return urlsplit(self.issuer).path.rstrip("/") or "/"

    def derive(self, purpose: str) -> bytes:
        return derive_key(self.secret, purpose)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` (HKDF-SHA256, domain-separated)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"identity-devidp", info=purpose.encode()).derive(secret)
