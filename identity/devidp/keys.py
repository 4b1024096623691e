"""The development IdP's ES256 signing keys, derived from a secret instead of stored.

Every gunicorn worker derives the same key from the same secret (itself derived from the pepper),
so the ID token one worker signs verifies against the JWKS another worker serves, and nothing is
written to disk. ``rotate`` moves to the next derived key and keeps the previous one published, the
way a real provider overlaps keys; it changes this process only (a development convenience).
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey

ALGORITHM = "ES256"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def derive_signing_key(secret: bytes, generation: int) -> ECKey:
    """The P-256 key of ``generation``: HKDF output reduced into [1, n-1], ``kid`` its thumbprint."""
    material = HKDF(algorithm=hashes.SHA256(), length=48, salt=b"identity-devidp",
                    info=f"signing-key-{generation}".encode()).derive(secret)
    scalar = int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    kid = ECKey.import_key(private.public_key()).thumbprint()
    return ECKey.import_key(private, parameters={"kid": kid, "use": "sig", "alg": ALGORITHM})


class SigningKeys:
    """The active key and the previous one (still published after a rotation)."""

    def __init__(self, secret: bytes, *, published: int = 2) -> None:
        self._secret = secret
        self._published = published
        self._lock = threading.Lock()
        self._keys = [derive_signing_key(secret, 0)]
        self._generation = 0

    def __repr__(self) -> str:
        return f"SigningKeys(generation={self._generation})"

    @property
    def active(self) -> ECKey:
        return self._keys[0]

    def jwks(self) -> dict[str, list[dict[str, object]]]:
        """Public keys only: what ``/jwks`` serves."""
        return {"keys": [dict(key.as_dict(private=False)) for key in self._keys]}

    def rotate(self, *, keep_previous: bool = True) -> ECKey:
        """Sign with the next key from now on; keep the previous one published unless told not to."""
        with self._lock:
            self._generation += 1
            kept = self._keys[: self._published - 1] if keep_previous else []
            self._keys = [derive_signing_key(self._secret, self._generation), *kept]
            return self._keys[0]
