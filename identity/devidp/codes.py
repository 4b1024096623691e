"""The development IdP's authorization codes: sealed, short-lived, one-time.

A code is the grant itself, encrypted (AES-256-GCM under a key derived from the IdP's secret), so
the e-mail address typed into the form is never written to the store, and any worker can redeem a
code another one issued. Only the code's random id is stored, when it is redeemed, under a unique
key: the second redemption of a code finds it and fails.
"""

from __future__ import annotations

import binascii
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..store import Collection, DuplicateKeyError, Lt, Store
from ..verify.b64 import b64url_decode, b64url_encode

USED_CODES = Collection(
    name="devidp_used_codes",
    key="code_id",
    fields={"code_id": str, "expires_at": int},
    indexed=("expires_at",),
    durable=False,  # losing one in a power cut lets a 60-second development code be replayed: harmless
)
_AAD = b"identity-devidp-code-v1"
_NONCE_BYTES = 12
MAX_CODE_LENGTH = 2048


@dataclass(frozen=True)
class Grant:
    """What a code stands for. ``repr`` never shows the e-mail address."""

    code_id: str
    email: str = field(repr=False)
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str
    auth_time: int
    expires_at: int


class CodeBook:
    """Issues and redeems codes."""

    def __init__(self, store: Store, *, key: bytes, ttl: int, clock: Callable[[], float]) -> None:
        self._store = store
        self._aead = AESGCM(key)
        self._ttl = ttl
        self._clock = clock

    def issue(self, *, email: str, client_id: str, redirect_uri: str, nonce: str | None,
              code_challenge: str) -> str:
        now = int(self._clock())
        payload = json.dumps({
            "jti": secrets.token_urlsafe(16), "email": email, "client_id": client_id,
            "redirect_uri": redirect_uri, "nonce": nonce, "code_challenge": code_challenge,
            "auth_time": now, "exp": now + self._ttl,
        }).encode("utf-8")
        nonce_bytes = os.urandom(_NONCE_BYTES)
        return b64url_encode(nonce_bytes + self._aead.encrypt(nonce_bytes, payload, _AAD))

    def redeem(self, code: str) -> Grant | None:
        """The grant if the code is genuine, unexpired and redeemed for the first time; else None."""
        if not isinstance(code, str) or not code or len(code) > MAX_CODE_LENGTH:
            return None
        try:
            raw = b64url_decode(code)
            payload = json.loads(self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD))
        except (InvalidTag, ValueError, binascii.Error):
            return None
        now = int(self._clock())
        if payload["exp"] <= now:
            return None
        try:
            self._store.insert(USED_CODES, {"code_id": payload["jti"], "expires_at": payload["exp"]})
        except DuplicateKeyError:
            return None
        self._store.delete(USED_CODES, {"expires_at": Lt(now)})
        return Grant(code_id=payload["jti"], email=payload["email"], client_id=payload["client_id"],
                     redirect_uri=payload["redirect_uri"], nonce=payload["nonce"],
                     code_challenge=payload["code_challenge"], auth_time=payload["auth_time"],
                     expires_at=payload["exp"])
