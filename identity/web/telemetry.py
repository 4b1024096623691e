"""Every request: its id (``X-Request-Id``), one JSON log line, and its metrics. One WSGI layer, the outermost
of ``identity.web.pipeline``.

* **Request id.** An incoming ``X-Request-Id`` is kept when it is well formed (``REQUEST_ID``: 8 to 128 of
  ``A-Z a-z 0-9 . _ : + = / -``, e.g. a UUID or a proxy's hex id; never an ``@``), otherwise a new one is
  made (32 hex digits). It is answered in ``X-Request-Id``, set on every log record made while the request is
  handled (``identity.logs.RequestContext``) and sent to the upstream IdP with every back-channel call
  (``identity.upstream.transport``).
* **Log line.** ``identity.access``, message ``request``: ``request_id``, ``method``, ``route`` (the route
  template, ``unmatched`` for any other path: never the path or query a client sent), ``status``,
  ``duration_ms``, and ``client_id`` once the request has named a registered client. No address, no
  query string, no header.
* **Metrics.** ``identity_http_requests_total`` and ``identity_http_request_duration_seconds`` by route
  (``identity.metrics``).

Outermost, so that every answer is counted and logged with its id: the size limits' refusals, the token
endpoint's fast path (``identity.web.oauth``) and Flask alike. It adds no Flask hook (the fast path stays on).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any, Callable, Iterable

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map

from ..logs import RequestContext, enter_request, leave_request
from ..metrics import UNMATCHED_ROUTE, method_label, observe_request
from .headers import WsgiApp

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/\-]{8,128}")
MAX_REMEMBERED_ROUTES = 1024
access_log = logging.getLogger("identity.access")


def new_request_id() -> str:
    return secrets.token_hex(16)


def accepted_request_id(value: str | None) -> str | None:
    """``value`` when it is a well-formed request id, else None."""
    return value if value is not None and REQUEST_ID.fullmatch(value) else None


class RouteNames:
    """PATH_INFO → the route template that serves it (``/token``), ``unmatched`` for anything else.

    Static routes are remembered (a bounded dict); paths nobody routes are matched each time and never
    remembered, so a scanner's random paths cost a lookup and no memory.
    """

    def __init__(self, url_map: Map) -> None:
        self._map = url_map
        self._known: dict[tuple[str, str], str] = {}

    def route(self, path: str, method: str) -> str:
        key = (path, method)
        known = self._known.get(key)
        if known is not None:
            return known
        adapter = self._map.bind("localhost")
        try:
            rule, _ = adapter.match(path, method=method, return_rule=True)
        except MethodNotAllowed as exc:
            allowed = sorted(exc.valid_methods or ())
            if not allowed:
                return UNMATCHED_ROUTE
            try:
                rule, _ = adapter.match(path, method=allowed[0], return_rule=True)
            except HTTPException:
                return UNMATCHED_ROUTE
        except HTTPException:  # not found, or a redirect to the canonical URL
            return UNMATCHED_ROUTE
        name = rule.rule
        if not rule.arguments:
            if len(self._known) >= MAX_REMEMBERED_ROUTES:
                self._known.clear()
            self._known[key] = name
        return name


class RequestTelemetry:
    """The request id, the access log line and the request metrics around ``wsgi_app``."""

    def __init__(self, wsgi_app: WsgiApp, url_map: Map) -> None:
        self._next = wsgi_app
        self._routes = RouteNames(url_map)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = accepted_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        environ["HTTP_X_REQUEST_ID"] = request_id  # what every layer inside sees
        context = RequestContext(request_id)
        token = enter_request(context)
        answered: list[str] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered[:] = [status]
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            return self._next(environ, start)
        finally:
            status = int(answered[0].split(" ", 1)[0]) if answered else 500
            self._record(environ, context, status, time.perf_counter() - started)
            leave_request(token)

    def _record(self, environ: dict[str, Any], context: RequestContext, status: int, seconds: float) -> None:
        method = method_label(str(environ.get("REQUEST_METHOD", "")))
        route = self._routes.route(environ.get("PATH_INFO") or "/", method)
        observe_request(route, method, status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            fields: dict[str, Any] = {"request_id": context.request_id, "method": method, "route": route,
                                      "status": status, "duration_ms": round(seconds * 1000, 3)}
            if context.client_id is not None:
                fields["client_id"] = context.client_id
            access_log.info("request", extra=fields)
