"""The access token's sealed reference: how the service recognises its own token without a record of it.

An access token is encrypted to its audience, so the service that minted it cannot read it. Rather than
write a record per token (one store write on the token endpoint's hot path, the largest cost around the
signature: issue 16), the JWE's protected header carries ``ref``::

    ref = <signing kid> "." base64url(nonce ‖ AES-256-GCM(fields, aad = "identity.ref.v1." <signing kid>))

``fields`` is a small JSON object: the token's ``jti``, ``iat`` and ``exp``, its grant id, and, for a token
without a grant (client_credentials), its client and audience; its scope. Never the person's pseudonym
nor an e-mail: a token under a grant is resolved through the grant. To anyone but the service the
reference is 12 random bytes and ciphertext, as unique per token as the ``jti``.

The AES key is derived (HKDF-SHA256, info below) from the private key of the signing key that signed the
token, so it needs no key file or rotation of its own: it lives exactly as long as that signing key is
loaded, which the rotation keeps for as long as the key's tokens can be valid. Forging a reference needs
that private key, and whoever holds it can forge the token itself. AES-GCM with a random 96-bit nonce
per token stays far inside its bound (2^32 messages per key) for any signing key's lifetime.

A token presented with a ``ref`` is believed only for what the reference says; a caller that also holds
the decrypted token (``/me``) checks that the two name the same ``jti``.
"""

from __future__ import annotations

import binascii
import json
import os
from typing import Any, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .keys import Keyring
from .keys.keyring import SigningKey
from .verify.b64 import b64url_decode, b64url_encode
from .verify.envelope import MAX_HEADER_SEGMENT

HEADER_PARAMETER = "ref"
_INFO = b"identity access-token reference v1"
_AAD_PREFIX = b"identity.ref.v1."
_NONCE_BYTES = 12


def _derive(key: SigningKey) -> AESGCM:
    secret = key.private_key.private_numbers().d
    material = secret.to_bytes((secret.bit_length() + 7) // 8, "big")
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(material))


class References:
    """Seals and opens access-token references under keys derived from the keyring's signing keys."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._loaded: tuple[SigningKey, ...] = ()
        self._ciphers: dict[str, AESGCM] = {}

    def _cipher(self, kid: str) -> AESGCM | None:
        keys = self._keyring.signing_keys()
        if keys is not self._loaded:  # a reload: derive for the keys held now, forget the rest
            known = {key.kid: key for key in keys}
            self._ciphers = {kid: self._ciphers.get(kid) or _derive(key) for kid, key in known.items()}
            self._loaded = keys
        return self._ciphers.get(kid)

    def seal(self, signing_kid: str, fields: Mapping[str, Any]) -> str:
        """The ``ref`` header value for a token signed by ``signing_kid``."""
        cipher = self._cipher(signing_kid)
        if cipher is None:
            raise LookupError("the signing key is not loaded")
        nonce = os.urandom(_NONCE_BYTES)
        plaintext = json.dumps(fields, separators=(",", ":")).encode("utf-8")
        sealed = cipher.encrypt(nonce, plaintext, _AAD_PREFIX + signing_kid.encode("ascii"))
        return f"{signing_kid}.{b64url_encode(nonce + sealed)}"

    def open(self, reference: object) -> dict[str, Any] | None:
        """The fields a reference sealed, or None: not one of ours, tampered with, or its key is gone."""
        if not isinstance(reference, str) or len(reference) > MAX_HEADER_SEGMENT:
            return None
        kid, separator, body = reference.partition(".")
        cipher = self._cipher(kid) if separator else None
        if cipher is None:
            return None
        try:
            raw = b64url_decode(body)
            plaintext = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD_PREFIX + kid.encode("ascii"))
            fields = json.loads(plaintext)
        except (binascii.Error, ValueError, InvalidTag):
            return None
        return fields if isinstance(fields, dict) else None


def reference_of(token: str) -> object:
    """The ``ref`` member of a compact JWE's protected header, as given (None when there is none)."""
    segment = token.partition(".")[0]
    if not segment or len(segment) > MAX_HEADER_SEGMENT:  # longer than any header we mint
        return None
    try:
        header = json.loads(b64url_decode(segment))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return header.get(HEADER_PARAMETER) if isinstance(header, dict) else None
