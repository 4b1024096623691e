"""PKCE (RFC 7636), S256 only: ``plain`` and a missing method are refused."""

from __future__ import annotations

import hmac
import re

from authlib.oauth2.rfc7636 import create_s256_code_challenge

S256 = "S256"
VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.1
CHALLENGE_PATTERN = re.compile(r"^[A-Za-z0-9\-_]{43}$")  # base64url(SHA-256), no padding


def challenge_problem(challenge: str | None, method: str | None) -> str | None:
    """Why an authorization request's PKCE parameters are refused, or None when they are fine."""
    if challenge is None:
        return None if method is None else "code_challenge_method without code_challenge"
    if method != S256:
        return "code_challenge_method must be S256"
    if not CHALLENGE_PATTERN.fullmatch(challenge):
        return "code_challenge must be 43 base64url characters (S256)"
    return None


def verifier_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time."""
    if not VERIFIER_PATTERN.fullmatch(verifier):
        return False
    return hmac.compare_digest(create_s256_code_challenge(verifier).encode(), challenge.encode())
