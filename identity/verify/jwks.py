"""The issuer's signing keys: a JWKS cached as long as the issuer says, refetched once on an unknown ``kid``.

The JWKS is kept for the ``max-age`` of its response's ``Cache-Control`` (the issuer serves
``max-age=300``), bounded by ``min_ttl`` and ``max_ttl`` so that neither a misconfigured issuer
(``no-store``, ``max-age=0``) makes every token a fetch, nor a year-long ``max-age`` keeps a withdrawn
key trusted; without a ``max-age``, ``ttl``. Every fetch attempt (first load, refresh, unknown ``kid``)
is rate-limited to one per ``min_refresh_interval``, and concurrent callers share one fetch, so a flood
of tokens naming made-up key ids costs the issuer at most one request per interval. While a refresh is
due or failing, the keys already held keep verifying (stale-while-revalidate). A caller that must wait for
another thread's fetch (no keys yet, an unknown ``kid``) waits at most ``refresh_wait`` seconds, then gets
``IssuerUnavailable``: a slow issuer never holds every request hostage.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .discovery import Discovery
from .errors import IssuerUnavailable, UnknownKey
from .http import Fetcher, require_safe_url, unavailable_on_failure
from .keys import parse_jwks

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 300.0  # without a max-age; the issuer serves its JWKS with max-age=300
DEFAULT_MIN_TTL_SECONDS = 60.0  # the floor under the response's max-age
DEFAULT_MAX_TTL_SECONDS = 3600.0  # the ceiling over it
DEFAULT_MIN_REFRESH_SECONDS = 30.0
DEFAULT_REFRESH_WAIT_SECONDS = 10.0  # the longest a request waits for another thread's fetch


@dataclass(frozen=True)
class _Snapshot:
    keys: Mapping[str, RSAPublicKey]
    fetched_at: float
    ttl: float


class SigningKeys:
    """``kid`` → RS256 public key of the issuer, from ``jwks_uri`` or the discovery document."""

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        jwks_uri: str | None = None,
        discovery: Discovery | None = None,
        ttl: float = DEFAULT_TTL_SECONDS,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        on_keys_removed: Callable[[frozenset[str]], None] | None = None,
        min_ttl: float = DEFAULT_MIN_TTL_SECONDS,
        max_ttl: float = DEFAULT_MAX_TTL_SECONDS,
        refresh_wait: float = DEFAULT_REFRESH_WAIT_SECONDS,
    ) -> None:
        if jwks_uri is None and discovery is None:
            raise ValueError("either jwks_uri or discovery is required")
        if not 0 < min_ttl <= max_ttl:
            raise ValueError("the JWKS TTL bounds must satisfy 0 < min_ttl <= max_ttl")
        if not refresh_wait >= 0:
            raise ValueError("refresh_wait must not be negative")
        self._jwks_uri = require_safe_url(jwks_uri, "jwks_uri") if jwks_uri is not None else None
        self._discovery = discovery
        self._fetcher = fetcher
        self._ttl = ttl
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._min_interval = min_refresh_interval
        self._monotonic = monotonic
        self._on_keys_removed = on_keys_removed
        self._refresh_wait = refresh_wait
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._last_attempt: float | None = None

    def key(self, kid: str) -> RSAPublicKey:
        """The public key named ``kid``; ``UnknownKey`` or ``IssuerUnavailable`` otherwise."""
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._refresh(blocking=True)
            if snapshot is None:
                raise IssuerUnavailable("the issuer's signing keys could not be fetched")
        elif self._monotonic() - snapshot.fetched_at >= snapshot.ttl:
            snapshot = self._refresh(blocking=False) or snapshot
        key = snapshot.keys.get(kid)
        if key is not None:
            return key
        snapshot = self._refresh(blocking=True) or snapshot  # once, and only if the rate limit allows
        key = snapshot.keys.get(kid)
        if key is None:
            raise UnknownKey()
        return key

    def refresh(self) -> None:
        """Fetch now, ignoring the rate limit (start-up warm-up, operators); raises on failure."""
        self._acquire(blocking=True)
        try:
            self._last_attempt = self._monotonic()
            self._install(self._fetch(), self._last_attempt)
        finally:
            self._lock.release()

    def holds(self, kid: str) -> bool:
        """Whether ``kid`` is among the keys held now: a cheap re-check for a token verified earlier.

        Refreshes only as ``key`` does when the TTL has run out (never waiting for the lock, never
        outside the rate limit), so a key the issuer withdrew is noticed at the next refresh.
        """
        snapshot = self._snapshot
        if snapshot is None:
            return False
        if self._monotonic() - snapshot.fetched_at >= snapshot.ttl:
            snapshot = self._refresh(blocking=False) or snapshot
        return kid in snapshot.keys

    def kids(self) -> frozenset[str]:
        snapshot = self._snapshot
        return frozenset(snapshot.keys) if snapshot else frozenset()

    @property
    def current_ttl(self) -> float | None:
        """How long the keys held now are trusted before a refresh (None before the first fetch)."""
        snapshot = self._snapshot
        return snapshot.ttl if snapshot else None

    def ttl_for(self, max_age: int | None) -> float:
        """A response's ``max-age`` within [``min_ttl``, ``max_ttl``]; ``ttl`` (bounded too) without one."""
        wanted = self._ttl if max_age is None else float(max_age)
        return min(self._max_ttl, max(self._min_ttl, wanted))

    # -- internals ---------------------------------------------------------------------------

    def _jwks_url(self) -> str:
        if self._jwks_uri is not None:
            return self._jwks_uri
        assert self._discovery is not None
        return self._discovery.metadata().jwks_uri

    def _fetch(self) -> tuple[dict[str, RSAPublicKey], float]:
        url = self._jwks_url()
        with unavailable_on_failure("fetching the JWKS"):
            response = self._fetcher.get(url)
        keys = parse_jwks(response.json_object())
        max_age = response.max_age() if hasattr(response, "max_age") else None  # a fetcher's own response type
        return keys, self.ttl_for(max_age)

    def _install(self, fetched: tuple[dict[str, RSAPublicKey], float], now: float) -> _Snapshot:
        keys, ttl = fetched
        previous = self._snapshot
        self._snapshot = snapshot = _Snapshot(keys=keys, fetched_at=now, ttl=ttl)
        removed = frozenset(previous.keys) - frozenset(keys) if previous else frozenset()
        if removed and self._on_keys_removed is not None:
            self._on_keys_removed(removed)
        return snapshot

    def _acquire(self, *, blocking: bool) -> bool:
        """Take the fetch lock: at once or not at all, or (``blocking``) within ``refresh_wait``,
        else ``IssuerUnavailable`` (another thread's fetch is taking too long)."""
        if not blocking:
            return self._lock.acquire(blocking=False)
        if not self._lock.acquire(timeout=self._refresh_wait):
            raise IssuerUnavailable("the issuer's signing keys are still being fetched")
        return True

    def _refresh(self, *, blocking: bool) -> _Snapshot | None:
        """Fetch unless another fetch happened within the interval; the current snapshot either way.

        Not ``blocking``: None when another thread is fetching. ``blocking``: ``IssuerUnavailable``
        when that other fetch lasts longer than ``refresh_wait``.
        """
        if not self._acquire(blocking=blocking):
            return None
        try:
            now = self._monotonic()
            if self._last_attempt is not None and now - self._last_attempt < self._min_interval:
                return self._snapshot
            self._last_attempt = now
            try:
                fetched = self._fetch()
            except IssuerUnavailable as exc:
                log.warning("fetching the issuer's JWKS failed: %s", exc)
                return self._snapshot
            return self._install(fetched, now)
        finally:
            self._lock.release()
