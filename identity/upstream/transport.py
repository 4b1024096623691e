"""HTTP for the back channel: every upstream call bounded in time and size; a URL prefix may be served in-process.

``UpstreamSession`` is Authlib's requests session with the rules of ``identity.verify.http`` (the
verification library's fetcher), written again here for a requests session that Authlib drives:

* **a deadline for the whole call** (``default_timeout``, ``IDENTITY_UPSTREAM_TIMEOUT``): connecting and
  the answer's head share it (urllib3's ``total``), and the body is read in a loop that gives up once it
  passes, however slowly the bytes trickle in;
* **a size cap**: an answer over ``MAX_ANSWER_BYTES`` (1 MiB, decoded) is refused, unread if it says so;
* **no redirects**: a 3xx answer is an error, never followed (not to plain http, not to loopback);
* **https only** when ``require_https`` (production): for every URL actually requested — the discovery
  URL, the ``jwks_uri`` and the ``token_endpoint`` — checked before anything is sent.

Each refusal is a ``requests.RequestException`` subclass, so the callers treat it as the IdP being
unusable (``UpstreamUnavailable``); its class name is the fixed reason logged.

``mounts`` maps URL prefixes to requests adapters. When the development IdP is mounted in the same
app, its prefix is served by ``WsgiTransport``, which calls the IdP's WSGI app directly: no socket, so
it works inside a gunicorn worker (no worker waits on itself), in tests, and behind any proxy.
Everything above the transport — Authlib, discovery, token request, JWKS, ID token checks — is the
code path used against Auth0.

Every call carries the current request's ``X-Request-Id`` (``identity.web.telemetry``), so the IdP's logs
can be joined with ours, and is timed and counted (``identity_upstream_*`` metrics) by ``call``: discovery,
token or jwks.
"""

from __future__ import annotations

import io
import time
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
import urllib3
from authlib.integrations.requests_client import OAuth2Session
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from werkzeug.test import EnvironBuilder, run_wsgi_app

from ..logs import current_request_id
from ..metrics import upstream_call

REQUEST_ID_HEADER = "X-Request-Id"
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
MAX_ANSWER_BYTES = 1024 * 1024  # a discovery document, a JWKS or a token answer is a few KiB
READ_CHUNK_BYTES = 16 * 1024


class UpstreamTimeout(requests.Timeout):
    """The answer was still arriving when the call's deadline passed."""


class AnswerTooLarge(requests.RequestException):
    """The answer is larger than ``MAX_ANSWER_BYTES``."""


class RedirectRefused(requests.RequestException):
    """The IdP answered with a redirect; the back channel follows none."""


class InsecureUpstreamURL(requests.RequestException):
    """A URL that is not https (or not a URL at all) was to be requested where https is required."""


class UnusableAnswer(requests.RequestException):
    """The IdP answered, but not with what the call needs (a 200 JSON object of the expected shape)."""


def call_name(method: str, url: str) -> str:
    """What an upstream call is, as a metric label: ``discovery``, ``token`` (POST) or ``jwks``."""
    if method.upper() == "POST":
        return "token"
    try:
        path = urlsplit(url).path
    except ValueError:  # not a URL: refused before it is requested, still counted
        path = ""
    return "discovery" if path.endswith(DISCOVERY_SUFFIX) else "jwks"


def is_url(value: object, schemes: tuple[str, ...] = ("https",)) -> bool:
    """``value`` is a URL string with one of ``schemes``, a host, and a valid port if it names one."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:  # e.g. "https://[bad": an unbalanced IPv6 bracket
        return False
    return parts.scheme in schemes and bool(parts.hostname)


class UpstreamResponse(Response):
    """A response whose whole body has been read (within the deadline and the cap) into memory."""

    def json(self, **kwargs: Any) -> Any:
        """The body as JSON; JSON nested too deeply for the parser is invalid JSON too (a ``ValueError``)."""
        try:
            return super().json(**kwargs)
        except RecursionError:  # e.g. "[" * 100000: not a JSONDecodeError, but just as unusable
            raise requests.JSONDecodeError("the answer nests too deeply", "", 0) from None


def json_object(response: Response) -> dict[str, Any]:
    """The body of a 200 answer as a JSON object; ``UnusableAnswer`` (or the HTTP error) otherwise."""
    response.raise_for_status()
    if response.status_code != 200:
        raise UnusableAnswer(f"HTTP {response.status_code} instead of 200")
    try:
        value = response.json()
    except (ValueError, RecursionError):  # requests' JSONDecodeError and a UnicodeDecodeError are ValueErrors
        raise UnusableAnswer("the answer is not JSON") from None
    if not isinstance(value, dict):
        raise UnusableAnswer("the answer is JSON, but not an object")
    return value


class UpstreamSession(OAuth2Session):
    """Authlib's OAuth 2 session with the back channel's rules (module docstring); ``mounts`` installs
    adapters for URL prefixes."""

    def __init__(self, *args: Any, mounts: Mapping[str, BaseAdapter] | None = None, require_https: bool = True,
                 max_bytes: int = MAX_ANSWER_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.default_timeout or self.default_timeout <= 0:
            self.close()
            raise ValueError("every upstream call needs a timeout (default_timeout)")
        self.require_https = require_https
        self.max_bytes = max_bytes
        for prefix, adapter in (mounts or {}).items():
            self.mount(prefix, adapter)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        """Every upstream call: the URL checked, the request id added, the answer read whole within the
        deadline and the cap, the duration and failures recorded."""
        request_id = current_request_id()
        if request_id is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), REQUEST_ID_HEADER: request_id}
        deadline_seconds = float(self.default_timeout)
        # The transport decides these, never a caller: no redirects, the body read here, TLS verified, and one
        # deadline for connecting and the answer's head (the body's deadline is checked while reading it).
        kwargs.update(allow_redirects=False, stream=True, verify=True,
                      timeout=urllib3.Timeout(connect=deadline_seconds, read=deadline_seconds, total=deadline_seconds))
        with upstream_call(call_name(method, url)) as fail:
            if self.require_https and not is_url(url):
                raise InsecureUpstreamURL("the upstream IdP must be reached over https")
            deadline = time.monotonic() + deadline_seconds
            response = super().request(method, url, *args, **kwargs)
            try:
                if 300 <= response.status_code < 400:
                    raise RedirectRefused(f"the upstream IdP answered HTTP {response.status_code} (a redirect)")
                body = self._read_body(response, deadline)
            finally:
                response.close()
            if response.status_code >= 400:
                fail("http_5xx" if response.status_code >= 500 else "http_4xx")
            return read_answer(response, body)

    def _read_body(self, response: Response, deadline: float) -> bytes:
        """The (decoded) body as it arrives; ``AnswerTooLarge`` past ``max_bytes``, ``UpstreamTimeout`` when it is
        still arriving at ``deadline``. ``read1`` returns whatever one socket read brings, so the deadline is
        checked however slowly the bytes come (each read is bounded by the socket timeout)."""
        declared = response.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > self.max_bytes:
            raise AnswerTooLarge("the upstream IdP's answer is too large")
        raw = response.raw
        body = bytearray()
        while True:
            if time.monotonic() >= deadline:
                raise UpstreamTimeout("the upstream IdP took too long to answer")
            try:
                if isinstance(raw, urllib3.BaseHTTPResponse):
                    chunk = raw.read1(READ_CHUNK_BYTES, decode_content=True)
                else:  # an in-process adapter's body (WsgiTransport): a file-like object
                    chunk = raw.read(READ_CHUNK_BYTES)
            except urllib3.exceptions.ReadTimeoutError:
                raise UpstreamTimeout("the upstream IdP took too long to answer") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # a broken, undecodable or reset body
                raise RequestsConnectionError(f"reading the upstream IdP's answer failed ({type(exc).__name__})") \
                    from None
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.max_bytes:
                raise AnswerTooLarge("the upstream IdP's answer is too large")


def read_answer(response: Response, body: bytes) -> UpstreamResponse:
    """``response`` (already closed) as an ``UpstreamResponse`` whose ``.content`` is ``body``."""
    answer = UpstreamResponse()
    answer.__dict__.update(response.__dict__)
    answer.raw = io.BytesIO(body)  # read by .content as an adapter's raw body (public API)
    return answer


class WsgiTransport(BaseAdapter):
    """A requests adapter that answers from a WSGI app mounted at ``base_url``."""

    def __init__(self, app: Any, base_url: str) -> None:
        super().__init__()
        self._app = app
        self._base = urlsplit(base_url.rstrip("/"))

    def send(self, request: PreparedRequest, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> Response:
        url = urlsplit(request.url or "")
        if (url.scheme, url.netloc) != (self._base.scheme, self._base.netloc) or not (
                url.path == self._base.path or url.path.startswith(self._base.path + "/")):
            raise RequestsConnectionError(f"{url.scheme}://{url.netloc}{url.path} is not served in-process",
                                          request=request)
        body = request.body or b""
        environ = EnvironBuilder(
            path=url.path[len(self._base.path):] or "/",
            base_url=f"{self._base.scheme}://{self._base.netloc}{self._base.path}",
            query_string=url.query,
            method=request.method,
            headers=list(request.headers.items()),
            data=body.encode("utf-8") if isinstance(body, str) else body,
        ).get_environ()
        app_iter, status, headers = run_wsgi_app(self._app, environ, buffered=True)
        try:
            content = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        response = Response()
        code, _, reason = status.partition(" ")
        response.status_code = int(code)
        response.reason = reason
        response.headers = CaseInsensitiveDict(headers.to_wsgi_list())
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = io.BytesIO(content)  # read by .content as an adapter's raw body (public API)
        response.url = request.url or ""
        response.request = request
        response.connection = self  # type: ignore[assignment]  # requests says HTTPAdapter; any adapter serves
        return response

    def close(self) -> None:
        """Nothing to release: no connections."""
