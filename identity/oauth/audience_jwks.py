"""The encryption keys of audiences registered by ``--jwks-uri``: fetched within bounds, shared, remembered.

A remote key set is fetched inside a ``/token`` request, so a slow, huge or dead JWKS endpoint of one
downstream service must not tie up the workers that serve everyone:

* a fetch is cut off once ``FETCH_DEADLINE_SECONDS`` have passed, not per read (a server sending a byte
  every second is cut off too): within that plus one read's ``READ_TIMEOUT_SECONDS`` in all; it reads at
  most ``MAX_JWKS_BYTES``;
* one fetch per audience at a time in a process: while it runs, the others use the key fetched before
  (if there is one) or wait for it, never start their own;
* a failed fetch is not tried again for ``RETRY_AFTER_SECONDS``: meanwhile requests answer at once, with
  the last good key while it is at most ``STALE_SECONDS`` past its refresh (a downstream service keeps
  its previous key a while after rotating it), else with ``AudienceKeyUnavailable`` (a 503).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable

from ..tokens import EncryptionKey

FETCH_DEADLINE_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 1.0  # per read (and to connect), within the deadline
MAX_JWKS_BYTES = 64 * 1024
REFRESH_SECONDS = 600.0  # a fetched key is fetched again after this
STALE_SECONDS = 3600.0  # ...and still used this long after that while the JWKS cannot be fetched
RETRY_AFTER_SECONDS = 30.0

JwksFetcher = Callable[[str], dict[str, Any]]


class AudienceKeyUnavailable(Exception):
    """The audience's encryption key could not be fetched (a remote JWKS that failed)."""


def fetch_jwks_with_requests(uri: str) -> dict[str, Any]:
    """GET ``uri`` as JSON within ``FETCH_DEADLINE_SECONDS`` and ``MAX_JWKS_BYTES``; no redirects."""
    import json

    import requests  # imported here: only audiences registered by --jwks-uri need it

    deadline = time.monotonic() + FETCH_DEADLINE_SECONDS
    with requests.get(uri, timeout=(READ_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS), allow_redirects=False,
                      stream=True, headers={"Accept": "application/json"}) as response:
        response.raise_for_status()
        # read1: what one read returns (read(n) would wait for n bytes, however slowly they come)
        read = getattr(response.raw, "read1", response.raw.read)
        body = bytearray()
        while chunk := read(8192, decode_content=True):
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise AudienceKeyUnavailable(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
            if time.monotonic() > deadline:
                raise AudienceKeyUnavailable(f"the JWKS took longer than {FETCH_DEADLINE_SECONDS:g} s")
    parsed = json.loads(bytes(body))
    if not isinstance(parsed, dict):
        raise AudienceKeyUnavailable("the JWKS is not a JSON object")
    return parsed


class RemoteKeys:
    """Keys from remote JWKS, one entry per ``cache_key`` (an audience as last updated); thread-safe."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._keys: dict[Hashable, tuple[float, EncryptionKey]] = {}  # when fetched, the key
        self._failed: dict[Hashable, float] = {}  # when the last fetch failed
        self._fetching: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, cache_key: Hashable, fetch: Callable[[], EncryptionKey]) -> EncryptionKey:
        """The key for ``cache_key``, fetched by ``fetch`` when due (module docstring).

        :raises AudienceKeyUnavailable: no usable key, and none could be fetched now.
        """
        now = self._monotonic()
        cached = self._keys.get(cache_key)
        if cached is not None and now - cached[0] < REFRESH_SECONDS:
            return cached[1]
        usable = cached[1] if cached is not None and now - cached[0] < REFRESH_SECONDS + STALE_SECONDS else None
        failed_at = self._failed.get(cache_key)
        if failed_at is not None and now - failed_at < RETRY_AFTER_SECONDS:
            return self._or_unavailable(usable, "the audience's JWKS could not be fetched a moment ago")
        with self._lock:
            turn = self._fetching.setdefault(cache_key, threading.Lock())
        # With a usable key, only a thread that gets the turn at once fetches; without one, wait for it.
        if usable is not None:
            got_turn = turn.acquire(blocking=False)
        else:
            got_turn = turn.acquire(timeout=FETCH_DEADLINE_SECONDS + READ_TIMEOUT_SECONDS + 1)
        if not got_turn:
            return self._or_unavailable(usable, "the audience's JWKS is being fetched")
        try:
            fresh = self._keys.get(cache_key)
            if fresh is not None and fresh is not cached:  # fetched by the thread this one waited for
                return fresh[1]
            if self._failed.get(cache_key, float("-inf")) > now:  # failed while this one waited
                return self._or_unavailable(usable, "the audience's JWKS could not be fetched")
            try:
                key = fetch()
            except AudienceKeyUnavailable:
                self._failed[cache_key] = self._monotonic()
                if usable is not None:
                    return usable
                raise
            except Exception as exc:  # any transport or decoding failure of the remote JWKS
                self._failed[cache_key] = self._monotonic()
                if usable is not None:
                    return usable
                raise AudienceKeyUnavailable("the audience's JWKS could not be fetched") from exc
            with self._lock:
                if len(self._keys) > 10_000:  # audiences updated over and over: start afresh
                    self._keys.clear()
                    self._failed.clear()
                self._keys[cache_key] = (self._monotonic(), key)
                self._failed.pop(cache_key, None)
            return key
        finally:
            turn.release()

    @staticmethod
    def _or_unavailable(key: EncryptionKey | None, reason: str) -> EncryptionKey:
        if key is None:
            raise AudienceKeyUnavailable(reason)
        return key
