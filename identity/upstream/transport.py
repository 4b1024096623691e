"""HTTP for the back channel: every upstream call has a timeout; a URL prefix may be served in-process.

``UpstreamSession`` is Authlib's requests session with ``default_timeout`` always set and optional
``mounts`` (URL prefix → requests adapter). When the development IdP is mounted in the same app,
its prefix is served by ``WsgiTransport``, which calls the IdP's WSGI app directly: no socket, so
it works inside a gunicorn worker (no worker waits on itself), in tests, and behind any proxy.
Everything above the transport — Authlib, discovery, token request, JWKS, ID token checks — is the
code path used against Auth0.

Every call carries the current request's ``X-Request-Id`` (``identity.web.telemetry``), so the IdP's logs
can be joined with ours, and is timed and counted (``identity_upstream_*`` metrics) by ``call``: discovery,
token or jwks.
"""

from __future__ import annotations

import io
from typing import Any, Mapping
from urllib.parse import urlsplit

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


def call_name(method: str, url: str) -> str:
    """What an upstream call is, as a metric label: ``discovery``, ``token`` (POST) or ``jwks``."""
    if method.upper() == "POST":
        return "token"
    return "discovery" if urlsplit(url).path.endswith(DISCOVERY_SUFFIX) else "jwks"


class UpstreamSession(OAuth2Session):
    """Authlib's OAuth 2 session; ``mounts`` installs adapters for URL prefixes."""

    def __init__(self, *args: Any, mounts: Mapping[str, BaseAdapter] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.default_timeout:
            self.close()
            raise ValueError("every upstream call needs a timeout (default_timeout)")
        for prefix, adapter in (mounts or {}).items():
            self.mount(prefix, adapter)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        """Every upstream call: the request id added, the duration and failures recorded."""
        request_id = current_request_id()
        if request_id is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), REQUEST_ID_HEADER: request_id}
        with upstream_call(call_name(method, url)) as fail:
            response = super().request(method, url, *args, **kwargs)
            if response.status_code >= 400:
                fail("http_5xx" if response.status_code >= 500 else "http_4xx")
            return response


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
