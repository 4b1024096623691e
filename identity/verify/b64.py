"""Unpadded base64url, the encoding of every JOSE segment (RFC 7515 §2, "Base64url Encoding").

The one pair of helpers the verification library and the service share (the service imports them from
here, since ``identity.verify`` also ships alone). Decoding restores the padding and is as lenient as
``base64.urlsafe_b64decode``: characters outside the alphabet are discarded, not refused, and malformed
input raises ``ValueError`` (``binascii.Error``, or a plain ``ValueError`` for a non-ASCII string). A
caller that must refuse non-canonical input checks it against its own pattern first (``dpo_shares``).
"""

from __future__ import annotations

import base64


def b64url_encode(data: bytes) -> str:
    """``data`` as base64url with the trailing ``=`` padding removed."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """The bytes of unpadded (or padded) base64url ``text``; ``ValueError`` when it cannot be decoded."""
    padding = -len(text) % 4
    if isinstance(text, str):
        return base64.urlsafe_b64decode(text + "=" * padding)
    return base64.urlsafe_b64decode(text + b"=" * padding)
