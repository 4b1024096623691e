"""The only door to the network: an injectable fetcher, and which URLs it may be pointed at.

The verifier fetches exactly the URLs it was configured with (discovery, JWKS, introspection),
never a URL a token names. Tests inject a fake ``Fetcher``; the default uses ``requests`` with
timeouts (per read, and a deadline for the whole response), no redirects and a response size cap.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol
from urllib.parse import urlsplit

from .errors import ConfigurationError, IssuerUnavailable

if TYPE_CHECKING:  # pragma: no cover
    import requests

MAX_RESPONSE_BYTES = 1024 * 1024
DEFAULT_TOTAL_TIMEOUT_SECONDS = 10.0  # a whole fetch, however the bytes trickle in
READ_CHUNK_BYTES = 16 * 1024
LOOPBACK_NAMES = frozenset({"localhost"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True)
class HttpResponse:
    """What the verifier needs from an HTTP response: status, body, and the headers (names lower-case)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    def max_age(self) -> int | None:
        """Seconds the response may be reused (RFC 9111 §5.2.2.1 ``max-age``; ``no-cache``/``no-store`` → 0),
        None when ``Cache-Control`` says nothing usable."""
        control = self.headers.get("cache-control")
        if not control:
            return None
        if _NO_CACHE.search(control):
            return 0
        found = _MAX_AGE.search(control)
        return int(found.group(1)) if found else None

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; ``IssuerUnavailable`` when it is not a 200 JSON object."""
        if self.status != 200:
            raise IssuerUnavailable(f"the issuer answered HTTP {self.status}")
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: '[' * 100000
            raise IssuerUnavailable("the issuer answered with something that is not JSON") from exc
        if not isinstance(value, dict):
            raise IssuerUnavailable("the issuer answered with JSON that is not an object")
        return value


class Fetcher(Protocol):
    """HTTP as the verifier uses it. Implementations raise ``IssuerUnavailable`` on transport errors."""

    def get(self, url: str) -> HttpResponse: ...

    def post_form(self, url: str, form: Mapping[str, str], *, basic_auth: tuple[str, str]) -> HttpResponse: ...


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def unavailable_on_failure(what: str) -> Iterator[None]:
    """Any failure inside is ``IssuerUnavailable`` ("``what`` failed"): an injected fetcher, or a response,
    that breaks its contract still means the issuer cannot be used now."""
    try:
        yield
    except IssuerUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever it raised, the answer is "unavailable"
        raise IssuerUnavailable(f"{what} failed ({type(exc).__name__})") from None


def require_safe_url(url: object, what: str) -> str:
    """``url`` if it is https, or http to a loopback host (development); ``ConfigurationError`` otherwise."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{what} must be a URL string")
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:  # e.g. "https://[bad": an unbalanced IPv6 bracket
        raise ConfigurationError(f"{what} is not a valid URL") from None
    if scheme == "https" and host:
        return url
    if scheme == "http" and is_loopback_host(host):
        return url
    raise ConfigurationError(f"{what} must be an https URL (plain http only to a loopback host)")


class RequestsFetcher:
    """The default ``Fetcher``: ``requests`` with timeouts, no redirects, capped responses.

    ``read_timeout`` bounds each socket read; ``total_timeout`` bounds the whole fetch (connecting,
    the headers and the body), so an issuer sending its answer a byte at a time is given up on too.
    One ``requests.Session`` per thread, so connections are reused without sharing a session
    between threads.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 5.0,
        max_bytes: int = MAX_RESPONSE_BYTES,
        user_agent: str = "identity-verify/1",
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT_SECONDS,
    ) -> None:
        import requests  # imported here: verifying a cached key set never needs it
        import urllib3

        if not total_timeout > 0:
            raise ConfigurationError("total_timeout must be positive")
        self._requests = requests
        #: what reading a body can raise besides requests' own errors (a broken, undecodable or stalled body)
        self._transport_errors = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
        self._timeout = (connect_timeout, read_timeout)
        self._total_timeout = total_timeout
        self._max_bytes = max_bytes
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._requests.Session()
        return session

    def _send(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        deadline = time.monotonic() + self._total_timeout
        try:
            with self._session().request(
                method, url, headers=self._headers, timeout=self._timeout, allow_redirects=False,
                stream=True, **kwargs,
            ) as response:
                body = self._read_body(response.raw, deadline)
                status = response.status_code
                headers = {name.lower(): value for name, value in response.headers.items()}
        except self._transport_errors as exc:
            raise IssuerUnavailable(f"HTTP {method} to the issuer failed ({type(exc).__name__})") from None
        return HttpResponse(status=status, body=body, headers=headers)

    def _read_body(self, raw: Any, deadline: float) -> bytes:
        """The (decoded) body as it arrives; ``IssuerUnavailable`` once it exceeds ``max_bytes`` or is
        still arriving at ``deadline``. ``read1`` returns whatever one socket read brings, so the
        deadline is checked however slowly the bytes come."""
        body = bytearray()
        while True:
            if time.monotonic() >= deadline:
                raise IssuerUnavailable("the issuer took too long to answer")
            chunk = raw.read1(READ_CHUNK_BYTES, decode_content=True)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self._max_bytes:
                raise IssuerUnavailable("the issuer's response is too large")

    def get(self, url: str) -> HttpResponse:
        return self._send("GET", url)

    def post_form(self, url: str, form: Mapping[str, str], *, basic_auth: tuple[str, str]) -> HttpResponse:
        return self._send("POST", url, data=dict(form), auth=basic_auth)
