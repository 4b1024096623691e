"""The pairwise subject of a person in a sector: HMAC-SHA256 under the service's pairwise key.

``subject = base32(HMAC-SHA256(key, "identity-pairwise-subject/v1" 0 sector 0 pseudonym)[:16])``:
128 bits, 26 characters of ``a-z2-7`` like a vault pseudonym. Stable for as long as the key is
(it is never rotated: rotating it would change every subject every service holds), different in
every sector, and nobody without the key derives it from the pseudonym, or the pseudonym from it
(HMAC is a pseudo-random function). The key lives in ``IDENTITY_KEYS_DIR/pairwise_subject.key``,
apart from the pepper.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

DOMAIN = b"identity-pairwise-subject/v1\x00"
KEY_BYTES = 32


class PairwiseKey:
    """Derives pairwise subjects; ``repr`` never shows the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"the pairwise subject key needs at least {KEY_BYTES} bytes")
        self._mac = hmac.new(key, DOMAIN, hashlib.sha256)

    def __repr__(self) -> str:
        return "PairwiseKey()"

    def subject(self, sector: str, pseudonym: str) -> str:
        """The subject ``sector`` sees for the person with vault pseudonym ``pseudonym``."""
        mac = self._mac.copy()
        mac.update(sector.encode("ascii") + b"\x00" + pseudonym.encode("ascii"))
        return base64.b32encode(mac.digest()[:16]).decode("ascii").rstrip("=").lower()
