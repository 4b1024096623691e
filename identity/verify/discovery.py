"""Issuer metadata from ``{issuer}/.well-known/openid-configuration`` (OIDC Discovery §4, RFC 8414 §3)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .errors import ConfigurationError, IssuerUnavailable
from .http import Fetcher, require_safe_url, unavailable_on_failure

log = logging.getLogger(__name__)

WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class IssuerMetadata:
    """The parts of the issuer's metadata a resource server uses."""

    issuer: str
    jwks_uri: str
    introspection_endpoint: str | None = None


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN


def parse_metadata(document: dict[str, object], *, issuer: str) -> IssuerMetadata:
    """Validate a metadata document; the ``issuer`` in it MUST equal ours exactly (RFC 8414 §3.3)."""
    if document.get("issuer") != issuer:
        raise IssuerUnavailable("the discovery document names another issuer")
    jwks_uri = document.get("jwks_uri")
    introspection = document.get("introspection_endpoint")
    try:
        jwks_uri = require_safe_url(jwks_uri, "jwks_uri")
        if introspection is not None:
            introspection = require_safe_url(introspection, "introspection_endpoint")
    except ConfigurationError as exc:
        raise IssuerUnavailable(f"the discovery document is unusable: {exc}") from None
    return IssuerMetadata(issuer=issuer, jwks_uri=jwks_uri, introspection_endpoint=introspection)


class Discovery:
    """Fetches the metadata once and keeps it; after a failure (unreachable, or an unusable document),
    fails fast until ``retry_interval`` passed. A caller waits at most ``wait`` seconds for another
    thread's fetch."""

    def __init__(
        self,
        issuer: str,
        fetcher: Fetcher,
        *,
        retry_interval: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        wait: float = 10.0,
    ) -> None:
        self.issuer = issuer
        self.url = require_safe_url(discovery_url(issuer), "the issuer's discovery URL")
        self._fetcher = fetcher
        self._retry_interval = retry_interval
        self._monotonic = monotonic
        self._wait = wait
        self._lock = threading.Lock()
        self._metadata: IssuerMetadata | None = None
        self._failed_at: float | None = None

    def metadata(self) -> IssuerMetadata:
        """The issuer's metadata; ``IssuerUnavailable`` when it cannot be had now."""
        if self._metadata is not None:
            return self._metadata
        if not self._lock.acquire(timeout=self._wait):
            raise IssuerUnavailable("the issuer's discovery document is still being fetched")
        try:
            if self._metadata is not None:
                return self._metadata
            now = self._monotonic()
            if self._failed_at is not None and now - self._failed_at < self._retry_interval:
                raise IssuerUnavailable("the issuer's discovery document could not be fetched recently")
            try:
                self._metadata = self._fetch()
            except IssuerUnavailable as exc:
                self._failed_at = now
                log.warning("issuer discovery failed: %s", exc)
                raise
            return self._metadata
        finally:
            self._lock.release()

    def _fetch(self) -> IssuerMetadata:
        """Fetch and parse the document; every failure, whatever raised it, is ``IssuerUnavailable``."""
        with unavailable_on_failure("fetching the discovery document"):
            return parse_metadata(self._fetcher.get(self.url).json_object(), issuer=self.issuer)
