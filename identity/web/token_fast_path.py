"""``POST /token`` without Flask's per-request machinery: a WSGI layer in front of the ``token`` view.

Why it exists (issue 16, measured behind ``scripts/serve.py``, the production server, which parses HTTP
outside Python): the service on one pinned core (``taskset -c 0``, one worker, wrk on the other core),
``client_credentials`` at 32 connections, 5 interleaved rounds of 4 s, the same deployment served with
this layer on and off. With it: 1,322 tokens per CPU-second (1,298–1,322); without: 877 (852–890), so it
buys **1.51×** (1.47–1.53 round by round; ``make bench``'s own row, 3 rounds of 5 s: 1.42×). In-process the Flask path costs
about 300 µs more per request (833 against 530 µs of CPU, ``bench/bench_server.py`` ``breakdown``,
which every ``make bench`` repeats), as much as the RSA signature it wraps. The issue keeps such a layer
only if it buys at least 15 % behind the production server; ``BENCHMARKS.md`` ("Issue 16, phase 2") has
the run and how to repeat it.

What it promises: the same answer as the ``token`` view (``identity.web.oauth``) in every case. The
plain case is answered here: the same form rules (``application/x-www-form-urlencoded``, UTF-8, RFC 6749
§3.2 no parameter twice), the same client-authentication budget (``within_client_budget``), the same JSON
and headers (the app's allow-listed after_request hooks run on the response), and every error rendered by
the app's own error handlers inside a request context. Anything else goes to Flask untouched: another path
or method, a cookie, a chunked or oversized body, another content type, a body that is not UTF-8 or repeats
a parameter, and every request of an app whose set-up this layer cannot reproduce (``_unsupported``).

Where it sits (``identity.web.pipeline``): innermost, inside the size limits (``RequestSizeLimits``) and
the trusted-proxy layer, right around Flask. The whole token-endpoint test suite runs through both paths and
compares the answers (``tests/conftest.py``, ``token_path``).
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any, Callable, Iterable, cast
from urllib.parse import parse_qsl

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface

from .._compat import WERKZEUG_FORM_ERRORS
from .context import EXTENSION
from .headers import WsgiApp, no_store
from .oauth import FORM_CONTENT_TYPE, token, within_client_budget

log = logging.getLogger(__name__)

FAST_CONTENT_TYPES = frozenset({FORM_CONTENT_TYPE, FORM_CONTENT_TYPE + "; charset=utf-8",
                                FORM_CONTENT_TYPE + "; charset=UTF-8"})
# after_request hooks that only add headers to the response (no request, session or g): the fast
# path runs them itself. An app with any other hook gets no fast path.
CONTEXT_FREE_AFTER_REQUEST = frozenset({("identity.web.headers", "install_security_headers.<locals>._headers")})


TOKEN_FIELDS = ("access_token", "id_token", "refresh_token")


def _verbatim(value: object) -> bool:
    """Whether ``value`` is a string that JSON writes as it is: printable ASCII, no quote or backslash."""
    return (isinstance(value, str) and value.isascii() and value.isprintable() and '"' not in value
            and "\\" not in value)


class TokenFastPath:
    """``POST /token`` answered without Flask's request context (module docstring).

    ``enabled`` is decided at the first request, once the app is complete; tests may set it.
    """

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self._app = app
        self._next = wsgi_app
        self.enabled: bool | None = None
        self._max_length = 0
        self._json: json.JSONEncoder | None = None  # the app's JSON provider's settings, when plain
        # a 200's headers, taken from the first one: those before and after its Content-Length
        self._headers: tuple[list[tuple[str, str]], list[tuple[str, str]]] | None = None

    def _decide(self) -> bool:
        problem = self._unsupported()
        if problem:
            log.info("token fast path off: %s", problem)
            return False
        self._max_length = int(self._app.config["MAX_CONTENT_LENGTH"])
        provider = self._app.json
        if type(provider) is DefaultJSONProvider and not self._app.debug and provider.compact is not False:
            self._json = json.JSONEncoder(ensure_ascii=provider.ensure_ascii, sort_keys=provider.sort_keys,
                                          separators=(",", ":"), default=provider.default)
        return True

    def encode(self, result: dict[str, Any]) -> bytes:
        """The body the app's JSON provider makes for ``result`` (``_json``: a plain provider, compact).

        The encoder looks at every character of a string, and the tokens are most of a response: a
        token that is printable ASCII without a quote or backslash (base64url and dots always are) is
        its own JSON text under every setting, so it is written in as it is, in its member's place.
        """
        assert self._json is not None
        verbatim = {key: value for key in TOKEN_FIELDS if _verbatim(value := result.get(key))}
        if not verbatim or any(isinstance(value, (dict, list, tuple)) for value in result.values()):
            return (self._json.encode(result) + "\n").encode("utf-8")
        text = self._json.encode({**result, **dict.fromkeys(verbatim, "")})
        for key, value in verbatim.items():  # the member's key appears once: other quotes in strings are escaped
            text = text.replace(f'"{key}":""', f'"{key}":"{value}"', 1)
        return (text + "\n").encode("utf-8")

    def _unsupported(self) -> str | None:
        app = self._app
        try:
            endpoint, _ = app.url_map.bind("localhost").match("/token", "POST")
        except Exception:  # noqa: BLE001 - no route: let Flask answer
            return "POST /token is not routed"
        if endpoint != "oauth.token" or app.view_functions.get(endpoint) is not token:
            return "the token view is wrapped or replaced"
        if any(app.before_request_funcs.values()) or any(app.url_value_preprocessors.values()):
            return "before_request hooks"
        if any(app.teardown_request_funcs.values()) or any(app.url_default_functions.values()):
            return "teardown hooks"
        if set(app.after_request_funcs) - {None}:
            return "blueprint after_request hooks"
        for func in app.after_request_funcs.get(None, ()):
            if (getattr(func, "__module__", ""), getattr(func, "__qualname__", "")) not in CONTEXT_FREE_AFTER_REQUEST:
                return f"after_request hook {getattr(func, '__qualname__', func)!r}"
        if type(app.session_interface) is not SecureCookieSessionInterface:
            return "a custom session interface"
        if app.config.get("SERVER_NAME") or app.config.get("TRUSTED_HOSTS") or app.url_map.host_matching:
            return "host matching"
        if not isinstance(app.config.get("MAX_CONTENT_LENGTH"), int):
            return "no MAX_CONTENT_LENGTH"
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != "/token" or environ.get("REQUEST_METHOD") != "POST"
                or "HTTP_COOKIE" in environ or "HTTP_TRANSFER_ENCODING" in environ
                or environ.get("CONTENT_TYPE") not in FAST_CONTENT_TYPES):
            return self._next(environ, start_response)
        if self.enabled is None:
            self.enabled = self._decide()
        length = environ.get("CONTENT_LENGTH") or ""
        if not (self.enabled and length.isascii() and length.isdigit() and int(length) <= self._max_length):
            return self._next(environ, start_response)
        body = environ["wsgi.input"].read(int(length))
        form = self._form(body, int(length))
        if form is None:  # short, not UTF-8, or a parameter given twice: Flask says what is wrong
            return self._replay(environ, body, start_response)
        authorization = environ.get("HTTP_AUTHORIZATION")
        try:
            result = within_client_budget(
                self._app, environ, form, authorization,
                lambda: self._app.extensions[EXTENSION].oauth.token_endpoint.handle(form, authorization))
        except Exception:  # noqa: BLE001 - rendered by the app's own error handlers
            return self._render_error(environ, body, start_response)
        if self._headers is not None:
            data = self.encode(result)
            before, after = self._headers
            start_response("200 OK", [*before, ("Content-Length", str(len(data))), *after])
            return [data]
        return self._respond(result, environ, start_response)

    def _respond(self, result: dict[str, Any], environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """A 200 as the ``token`` view makes it; its headers are kept for the next ones.

        Every 200 of /token has the same headers but for Content-Length: the same mimetype, the
        view's no-store headers, and the allow-listed after_request hooks, which read only those.
        """
        # Flask types JSONProvider.response() as werkzeug's sans-IO Response; it makes app.response_class.
        response = no_store(cast(Response, self._app.json.response(result)))
        for func in reversed(self._app.after_request_funcs.get(None, ())):
            response = func(response)
        headers = list(response.get_wsgi_headers(environ).items())
        data = response.get_data()
        lengths = [i for i, (k, _) in enumerate(headers) if k == "Content-Length"]
        if (self._json is not None and response.status == "200 OK" and self.encode(result) == data
                and len(lengths) == 1):
            self._headers = headers[:lengths[0]], headers[lengths[0] + 1:]
        start_response(response.status, headers)
        return [data]

    @staticmethod
    def _form(body: bytes, length: int) -> dict[str, str] | None:
        """The form as Werkzeug parses it (RFC 6749 §3.2: no parameter twice), or None."""
        if len(body) != length:
            return None
        try:
            items = parse_qsl(body.decode(), keep_blank_values=True, errors=WERKZEUG_FORM_ERRORS)
        except ValueError:
            return None
        form = dict(items)
        return form if len(form) == len(items) else None

    def _replay(self, environ: dict[str, Any], body: bytes, start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        return self._next(environ, start_response)

    def _render_error(self, environ: dict[str, Any], body: bytes,
                      start_response: Callable[..., Any]) -> Iterable[bytes]:
        """What Flask's ``wsgi_app`` does when the view raises: called while the error is handled."""
        app = self._app
        environ["wsgi.input"] = io.BytesIO(body)
        ctx = app.request_context(environ)
        error: BaseException | None = None
        try:
            try:
                ctx.push()
                response = app.finalize_request(app.handle_user_exception(sys.exc_info()[1]))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - as Flask: unhandled → handle_exception
                error = exc
                response = app.handle_exception(exc)
            return response(environ, start_response)
        finally:
            if error is not None and app.should_ignore_error(error):
                error = None
            ctx.pop(error)


def find_token_fast_path(wsgi_app: Any) -> TokenFastPath | None:
    """The ``TokenFastPath`` among the layers of ``wsgi_app`` (ours keep the next one in ``_next``, Werkzeug's
    ``DispatcherMiddleware``, which mounts the development IdP, in ``app``)."""
    layer, depth = wsgi_app, 0
    while layer is not None and depth < 32:
        if isinstance(layer, TokenFastPath):
            return layer
        layer, depth = getattr(layer, "_next", None) or getattr(layer, "app", None), depth + 1
    return None
