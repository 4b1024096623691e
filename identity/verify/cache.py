"""Verified tokens remembered until they expire: bounded, least recently used out first.

Entries are keyed by SHA-256 of the token, so the cache never holds a usable bearer token, and
only tokens that passed every check are stored. A hit still re-checks expiry (and the verifier, that
the keys the token was verified with are still held).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

DEFAULT_MAX_ENTRIES = 10_000


def token_digest(token: str) -> bytes:
    """SHA-256 of the token's exact characters (any string, even one that is not a token)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class VerifiedCache(Generic[T]):
    """``digest`` → (value, expiry) with at most ``max_entries`` entries; thread-safe."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must not be negative")
        self._max = max_entries
        self._entries: OrderedDict[bytes, tuple[T, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, now: float) -> T | None:
        """The value stored under ``digest`` if it is still valid at ``now`` (expired entries are dropped)."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if now >= entry[1]:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry[0]

    def put(self, digest: bytes, value: T, valid_until: float) -> None:
        if self._max == 0:
            return
        with self._lock:
            self._entries[digest] = (value, valid_until)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def discard_where(self, predicate: Callable[[T], bool]) -> int:
        """Drop every entry whose value matches (e.g. signed by a key the issuer withdrew)."""
        with self._lock:
            doomed = [d for d, (value, _) in self._entries.items() if predicate(value)]
            for digest in doomed:
                del self._entries[digest]
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
