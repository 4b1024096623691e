"""Security headers on every response, size limits on every request, no server banner.

Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer``, ``Cross-Origin-Opener-Policy: same-origin``, a Content Security
Policy (``default-src 'none'``; HTML pages may load only their own inline style, allowed by its
SHA-256 hash, never ``'unsafe-inline'``), ``Cache-Control: no-store`` unless the view chose a
caching policy (JWKS and discovery are public), and HSTS when the issuer is https. No ``Server``
header leaves the app, and under gunicorn its ``Server: gunicorn`` banner is dropped as well.

The after_request hook reads only the response (no request, session or ``g``): the token endpoint's
fast path (``identity.web.token_fast_path.TokenFastPath``) runs it on the responses it makes itself.

The size limits (``RequestSizeLimits``) are one WSGI layer around everything else, the token fast
path and the rate limits included (``identity.web.pipeline``), so every route gives the same answer: a query string over 8 KiB
is 414, a header over 8 KiB or all headers over 32 KiB 431, a declared body over 64 KiB 413.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response
from werkzeug.wrappers import Response as BaseResponse

from .._compat import drop_gunicorn_server_header

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HTML_CSP_TEMPLATE = ("default-src 'none'; style-src {styles}; form-action 'self'; frame-ancestors 'none'; "
                     "base-uri 'none'")
HSTS = "max-age=31536000; includeSubDomains"
MAX_QUERY_STRING = 8 * 1024
MAX_HEADER_VALUE = 8 * 1024
MAX_HEADERS_TOTAL = 32 * 1024
MAX_BODY = 64 * 1024  # also Flask's MAX_CONTENT_LENGTH, for bodies without a Content-Length (chunked)
_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+\-]*(\.[a-z0-9+\-]+)+:")  # a native app's reverse-DNS scheme

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Helpers that add headers return the response they were given: Flask's subclass from make_response() and
# jsonify(), werkzeug's Response from flask.redirect() (so typed: outside an app context it makes werkzeug's).
ResponseT = TypeVar("ResponseT", bound=BaseResponse)


def style_hashes(app: Flask) -> list[str]:
    """CSP hash sources for every static ``<style>`` block of the app's templates (CSP3 §8.3)."""
    sources: list[str] = []
    loader = app.jinja_env.loader
    if loader is None:
        return sources
    for name in app.jinja_env.list_templates(extensions=["html"]):
        text, _, _ = loader.get_source(app.jinja_env, name)
        for block in _STYLE_BLOCK.findall(text):
            if "{{" in block or "{%" in block:
                continue  # rendered per request: cannot be hashed ahead of time (and is then blocked)
            digest = base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode("ascii")
            sources.append(f"'sha256-{digest}'")
    return sorted(set(sources))


def html_csp(app: Flask) -> str:
    return HTML_CSP_TEMPLATE.format(styles=" ".join(style_hashes(app)) or "'none'")


def with_form_action(csp: str, sources: Iterable[str]) -> str:
    """``csp`` whose ``form-action`` also allows ``sources``: for a page whose form starts a login
    upstream, since browsers check ``form-action`` on every redirect the submission follows.
    Accepts origins and the reverse-DNS scheme of a native app (``com.example.app:``), nothing else."""
    extra = " ".join(s for s in sources if _ORIGIN.fullmatch(s) or _PRIVATE_SCHEME.fullmatch(s))
    if not extra:
        return csp
    directives = [d.strip() for d in csp.split(";")]
    widened = [f"{d} {extra}" if d.split(" ", 1)[0] == "form-action" else d for d in directives]
    return "; ".join(widened)


def form_action_source(uri: str) -> str | None:
    """The CSP source that lets a form's redirect reach ``uri``: its origin, or a native app's scheme."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    source = f"{parts.scheme}:"
    return source if _PRIVATE_SCHEME.fullmatch(source) else None


def no_store(response: ResponseT) -> ResponseT:
    """Mark a response that carries a secret, a code or personal data as never to be cached
    (RFC 6749 §5.1; ``Pragma`` for HTTP/1.0 caches)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def secure_response(response: Response, *, https: bool, page_csp: str) -> Response:
    """Add the security headers to ``response`` (for responses made outside a Flask request too)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", page_csp if response.mimetype == "text/html" else STRICT_CSP)
    headers.setdefault("Cache-Control", "no-store")
    if https:
        headers.setdefault("Strict-Transport-Security", HSTS)
    headers.pop("Server", None)
    headers.pop("X-Powered-By", None)
    return response


def install_security_headers(app: Flask, *, https: bool) -> None:
    """Security headers on every response; no gunicorn banner."""
    page_csp = html_csp(app)
    app.extensions["identity.page_csp"] = page_csp

    @app.after_request
    def _headers(response: Response) -> Response:
        return secure_response(response, https=https, page_csp=page_csp)

    drop_gunicorn_server_header()


# CGI puts these two request headers in the environ without the HTTP_ prefix (PEP 3333).
_UNPREFIXED_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH")
_CGI_NAMES = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
              "SERVER_PROTOCOL", "SERVER_SOFTWARE", "GATEWAY_INTERFACE", "REMOTE_ADDR", "REMOTE_PORT", "REMOTE_HOST",
              "RAW_URI", "REQUEST_URI", "wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors",
              "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated", "wsgi.file_wrapper")


def _is_header(name: str) -> bool:
    return name.startswith("HTTP_") or name in _UNPREFIXED_HEADERS


def not_header_names(names: Iterable[str]) -> frozenset[str]:
    """Environ keys that never carry a request header: the CGI and WSGI ones and ``names`` (the process
    environment, which granian copies into every environ), less any that look like a header."""
    return frozenset(name for name in (*_CGI_NAMES, *names) if not _is_header(name))


class RequestSizeLimits:
    """Refuse an over-long query string (414), header (431) or declared body (413) before anything reads them.

    The outermost layer that reads the request (``identity.web.pipeline``), so the token endpoint's fast
    path and the rate limits see only requests within bounds. gunicorn refuses request lines over 4094
    bytes and header fields over 8190 bytes itself; this keeps the same bounds behind any other server (and in tests). A body without a
    ``Content-Length`` (chunked) is bounded by Flask's ``MAX_CONTENT_LENGTH`` as it is read (413 too).
    """

    def __init__(self, wsgi_app: WsgiApp, *, https: bool) -> None:
        self._next = wsgi_app
        self._https = https
        # Skipped at C speed by a set difference: granian copies the process environment into every environ,
        # dozens of keys that a loop in Python would each cost a third of a microsecond. Header names are
        # never in it, so every header is still checked.
        self._not_headers = not_header_names(os.environ)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if len(environ.get("QUERY_STRING", "")) > MAX_QUERY_STRING:
            return self._refuse(start_response, 414, "URI Too Long", "invalid_request", "the query string is too long")
        total = 0
        for name in environ.keys() - self._not_headers:
            value = environ[name]
            if _is_header(name) and isinstance(value, str):
                total += len(name) + len(value)
                if len(value) > MAX_HEADER_VALUE or total > MAX_HEADERS_TOTAL:
                    return self._refuse(start_response, 431, "Request Header Fields Too Large", "invalid_request",
                                        "a request header is too large")
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isascii() and length.isdigit() and int(length) > MAX_BODY:
            return self._refuse(start_response, 413, "Request Entity Too Large", "request_too_large",
                                "the request body is too large")
        return self._next(environ, start_response)

    def _refuse(self, start_response: Callable[..., Any], status: int, reason: str, error: str,
                description: str) -> Iterable[bytes]:
        body = json.dumps({"error": error, "error_description": description}).encode("utf-8")
        response = Response(body, status=status, mimetype="application/json")
        response.headers["Connection"] = "close"
        secure_response(response, https=self._https, page_csp=STRICT_CSP)
        start_response(f"{status} {reason}", list(response.headers.items()))
        return [body]
