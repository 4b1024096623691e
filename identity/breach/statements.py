"""The exact bytes officers sign: canonical JSON statements, one builder per kind.

Every statement names its ``type`` and version, so a signature over one kind can never be replayed
as another. Canonical JSON (sorted keys, no spaces, ASCII) makes the bytes a function of the fields,
so the store keeps the fields and the bytes are rebuilt to verify.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

KEY_CLAIM = "officer-key-claim"
FOUNDING = "officers-founding"
ENROLMENT = "officer-enrolment"
CONFIRMATION = "officer-enrolment-confirmation"
REVOCATION = "officer-revocation"


def canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def digest(payload: bytes, signature: str | None) -> str:
    """SHA-256 of a statement and its signature: what a second signature refers to."""
    return hashlib.sha256(payload + (signature or "").encode("ascii")).hexdigest()


def key_claim(officer: str, public_key: str) -> bytes:
    """The enrolee's proof of possession: "this key is mine, for officer NAME"."""
    return canonical({"type": KEY_CLAIM, "v": 1, "officer": officer, "public_key": public_key})


def founding(founders: list[tuple[str, str]], made_at: int, nonce: str) -> bytes:
    """The founding ceremony: both founders (name, public key) in one statement both sign."""
    named = [{"officer": name, "public_key": key} for name, key in sorted(founders)]
    return canonical({"type": FOUNDING, "v": 1, "founders": named, "made_at": made_at, "nonce": nonce})


def enrolment(doc: Mapping[str, Any]) -> bytes:
    """What the enrolling officer signs: the new officer, their key and proof, who enrols when."""
    return canonical({"type": ENROLMENT, "v": 1, **{name: doc.get(name) for name in (
        "officer", "public_key", "proof", "enrolled_by", "enrolled_at")}})


def confirmation(doc: Mapping[str, Any]) -> bytes:
    """What the second officer signs: the signed enrolment, by digest, and who confirms when."""
    return canonical({"type": CONFIRMATION, "v": 1, "officer": doc.get("officer"),
                      "enrolment_digest": digest(enrolment(doc), doc.get("enrolment_signature")),
                      "confirmed_by": doc.get("confirmed_by"), "confirmed_at": doc.get("confirmed_at")})


def revocation(doc: Mapping[str, Any]) -> bytes:
    """What the revoking officer signs: whom (name and key fingerprint), by whom, when."""
    return canonical({"type": REVOCATION, "v": 1, **{name: doc.get(name) for name in (
        "officer", "fingerprint", "revoked_by", "revoked_at")}})
