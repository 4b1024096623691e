"""Server-side state of the upstream leg, behind Authlib's cache interface (``get``/``set``/``delete``).

Authlib's Flask client keeps, per login, the upstream ``state``, ``nonce``, PKCE verifier, our
callback URL and the parked request's ``pending_id``. Given a cache it stores them there and puts
only a marker (``_state_upstream_<state>`` with an expiry) in the session cookie, which binds the
callback to the browser that started the login. Here the cache is the store: records expire with
the pending login, and ``get`` consumes, so exactly one callback can use a state.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from ..store import Collection, Lt, Store

UPSTREAM_LOGINS = Collection(
    name="upstream_logins",
    key="key_hash",
    fields={"key_hash": str, "data": str, "expires_at": int},
    indexed=("expires_at",),
)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class StoreStateCache:
    """One-time, expiring values in the ``upstream_logins`` collection."""

    def __init__(self, store: Store, *, ttl: int, clock: Callable[[], float]) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock

    def set(self, key: str, value: str, expires: int | None = None) -> None:
        now = int(self._clock())
        lifetime = min(expires or self._ttl, self._ttl)
        self._store.delete(UPSTREAM_LOGINS, {"expires_at": Lt(now)})  # tidy up abandoned logins
        self._store.insert(UPSTREAM_LOGINS, {"key_hash": _hash(key), "data": value, "expires_at": now + lifetime})

    def get(self, key: str) -> str | None:
        """The value, removed in the same step: a second ``get`` (a replayed callback) finds nothing."""
        if not isinstance(key, str) or not key:
            return None
        key_hash = _hash(key)
        doc = self._store.get(UPSTREAM_LOGINS, key_hash)
        if doc is None or self._store.delete(UPSTREAM_LOGINS, {"key_hash": key_hash}) != 1:
            return None
        if doc["expires_at"] <= self._clock():
            return None
        return doc["data"]

    def delete(self, key: str) -> None:
        if isinstance(key, str) and key:
            self._store.delete(UPSTREAM_LOGINS, {"key_hash": _hash(key)})
