"""Collections for authorization state: pending logins, codes, grants, refresh tokens, revoked access tokens.

Codes and tokens are stored only as SHA-256 hashes: they are 256-bit random values, so a plain
hash is enough and a leaked table yields nothing usable.
"""

from __future__ import annotations

import hashlib
import secrets

from ..store import Collection

PENDING_AUTHORIZATIONS = Collection(
    name="pending_authorizations",
    key="pending_id",
    fields={
        "pending_id": str,
        "client_id": str,
        "redirect_uri": str,
        "redirect_uri_given": bool,
        "state": str,
        "scope": str,
        "audience": str,
        "code_challenge": str,
        "nonce": str,
        "created_at": int,
        "expires_at": int,
        "purpose": str,
        "reference": str,  # a login of the service's own: what its handler needs (a hash, never a secret)
        "prompt": str,  # OIDC Core §3.1.2.1, space-delimited: "login" asks the IdP for a fresh sign-in
        "max_age": int,  # OIDC Core §3.1.2.1: passed to the IdP, its auth_time checked against it
        "auth_time": int,  # the IdP's auth_time, recorded at the callback (identity.upstream.broker)
    },
    indexed=("expires_at",),
)

AUTHORIZATION_CODES = Collection(
    name="authorization_codes",
    key="code_hash",
    fields={
        "code_hash": str,
        "grant_id": str,
        "client_id": str,
        "redirect_uri": str,
        "redirect_uri_given": bool,
        "code_challenge": str,
        "subject": str,
        "audience": str,
        "scope": str,
        "nonce": str,
        "auth_time": int,
        "expires_at": int,
        "used": bool,
    },
    indexed=("expires_at", "subject"),  # subject: erasure, closure, "remove access" end a person's codes
)

GRANTS = Collection(
    name="grants",
    key="grant_id",
    fields={
        "grant_id": str,
        "client_id": str,
        "subject": str,
        "audience": str,
        "scope": str,
        "created_at": int,
        "expires_at": int,
        "revoked_at": int,
        "revoked_reason": str,
        # The family's newest refresh token (its hash): rotation is one conditional write on this
        # document, "not revoked and still this token", so a revocation cannot slip in between.
        "refresh_hash": str,
        "refreshed_at": int,
        # The hash of the family id that every refresh token of the grant starts with (identity.oauth.grants)
        "refresh_family": str,
    },
    unique=("refresh_family",),
    indexed=("subject", "expires_at"),
)

# Refresh tokens from before the family format (identity.oauth.grants): read, no longer written; the
# retention purge removes them as they expire.
REFRESH_TOKENS = Collection(
    name="refresh_tokens",
    key="token_hash",
    fields={
        "token_hash": str,
        "grant_id": str,
        "client_id": str,
        "subject": str,
        "audience": str,
        "scope": str,
        "status": str,
        "created_at": int,
        "expires_at": int,
        "idle_expires_at": int,
        "used_at": int,
    },
    indexed=("grant_id", "subject", "expires_at"),
)

# Access tokens whose header could not carry their sealed reference (identity.token_reference: a very long
# scope or audience) and those issued before references existed: recognised by their hash.
ISSUED_ACCESS_TOKENS = Collection(
    name="issued_access_tokens",
    key="token_hash",
    fields={
        "token_hash": str,
        "jti": str,
        "grant_id": str,
        "client_id": str,
        "subject": str,
        "audience": str,
        "scope": str,
        "issued_at": int,
        "expires_at": int,
        "revoked": bool,
    },
    # Looked up by token_hash only (introspection, revocation); expires_at for the retention purge.
    # One row per token issued, on the token endpoint's hot path: no other index.
    indexed=("expires_at",),
    durable=False,  # losing one in a power cut only makes introspection answer inactive
)

# Access tokens revoked before they expired (RFC 7009), by ``jti``: kept until the token's own expiry,
# when the retention purge removes them. Every token is checked against it; none is written at issuance.
REVOKED_ACCESS_TOKENS = Collection(
    name="revoked_access_tokens",
    key="jti",
    fields={"jti": str, "expires_at": int},
    indexed=("expires_at",),
)

ACTIVE, ROTATED, REVOKED = "active", "rotated", "revoked"


def new_secret_value() -> str:
    """256 random bits, base64url (codes, refresh tokens, pending login ids)."""
    return secrets.token_urlsafe(32)


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
