"""HTTP framing rules the production server (granian, hyper's parser) leaves to the app: a thin WSGI layer.

``scripts/serve.py`` installs it around the whole app, outside every layer of ``identity.web.pipeline`` (never
``create_app``: the tests and gunicorn, whose parser refuses these itself, do not need it). Measured against gunicorn's strict parser
(tests/security/test_http_parsing.py, BENCHMARKS.md "Servers"), hyper already refuses conflicting
Content-Length values, a signed or non-decimal length, obsolete line folding, a space before the colon,
NUL, CR or invalid characters in a header, unknown transfer codings, chunked not last, invalid method
characters and HTTP versions other than 1.0/1.1. It is more lenient in four ways, refused here before the
app sees the request:

* **Transfer-Encoding** (411): hyper drops Content-Length when Transfer-Encoding is present too (RFC 9112
  §6.1 allows it, then closes the connection), so the two can no longer be told apart here; no client of
  this service needs a chunked request body (OAuth forms are small and sent with Content-Length), so every
  request with a transfer coding is refused, which removes the CL.TE / TE.CL class entirely.
* **Method** (501): hyper accepts any token (``get``, ``PURGE``); only the standard methods pass.
* **Host** (400): RFC 9112 §3.2 requires exactly one valid Host in HTTP/1.1; hyper joins repeated Host
  lines with a comma and passes a missing one as empty.
* **Request target** (414): hyper's only bound is its header buffer; gunicorn refuses request lines over
  4 KiB. Targets over ``MAX_TARGET`` are refused.

Every refusal answers with ``Connection: close`` (the server then drops whatever followed on the connection)
and the security headers of every other answer. One difference is left to the deployment: hyper accepts a
bare LF as a line end, as RFC 9112 §2.2 allows, consistently in the request line, the headers and chunk
framing; a WSGI layer cannot see line ends. README "Production" says which proxies may stand in front.

Responses get a neutral ``Server`` header: granian adds ``server: granian`` to any response without one
and has no setting to send none.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable

from flask import Response

from .headers import STRICT_CSP, WsgiApp, secure_response


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
MAX_TARGET = 8 * 1024
SERVER = ("Server", "identity")
# RFC 3986 host (reg-name, IPv4, bracketed IPv6) with an optional port; no comma, space or userinfo.
_HOST = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class StrictHttp:
    """Refuse requests whose framing or start line gunicorn's parser would refuse and hyper's passes."""

    def __init__(self, wsgi_app: WsgiApp, *, https: bool) -> None:
        self._next = wsgi_app
        self._https = https

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refusal = self.refusal(environ)
        if refusal is not None:
            return self._refuse(start_response, *refusal)

        def with_server(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [h for h in headers if h[0].lower() != "server"]
            headers.append(SERVER)
            return start_response(status, headers, exc_info)

        return self._next(environ, with_server)

    @staticmethod
    def refusal(environ: dict[str, Any]) -> tuple[int, str, str] | None:
        """(status, reason, description) for a request to refuse, or None."""
        if "HTTP_TRANSFER_ENCODING" in environ:
            return 411, "Length Required", "send the body with Content-Length; transfer codings are not accepted"
        if environ.get("REQUEST_METHOD") not in METHODS:
            return 501, "Not Implemented", "unsupported method"
        host = environ.get("HTTP_HOST", "")
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" and not host or host and not _HOST.fullmatch(host):
            return 400, "Bad Request", "exactly one valid Host header is required"
        if len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) > MAX_TARGET:
            return 414, "URI Too Long", "the request target is too long"
        length = environ.get("CONTENT_LENGTH")
        if length and not length.isdigit():  # hyper refuses these already; never pass one on
            return 400, "Bad Request", "invalid Content-Length"
        return None

    def _refuse(self, start_response: Callable[..., Any], status: int, reason: str,
                description: str) -> Iterable[bytes]:
        body = json.dumps({"error": "invalid_request", "error_description": description}).encode("utf-8")
        response = Response(body, status=status, mimetype="application/json")
        response.headers["Connection"] = "close"
        secure_response(response, https=self._https, page_csp=STRICT_CSP)
        start_response(f"{status} {reason}", [*response.headers.items(), SERVER])
        return [body]
