"""The one web renderer of the error model (``identity.errors``), registered once by ``create_app``.

* ``ServiceError`` → RFC 6749 §5.2 JSON (``error``, ``error_description``), its status and headers,
  ``Cache-Control: no-store``; a refusal (4xx) is a security event.
* ``PageError`` → the person's error page (``pages.error_page``), in their language.
* ``StoreUnavailable`` → 503 ``temporarily_unavailable``, ``Retry-After``, a clear message.
* Werkzeug's HTTP errors (404, 405 with ``Allow``, 413, …) → the same JSON shape.
* Anything else → 500 ``server_error`` with an incident reference that is also in the log; never a
  stack trace or internal detail.
"""

from __future__ import annotations

import logging
import secrets

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import PageError, ServerError, ServiceError, TemporarilyUnavailable
from ..logs import security_event
from ..store import StoreUnavailable
from .headers import no_store
from .pages import error_page

log = logging.getLogger(__name__)

STORE_UNAVAILABLE = "the identity store is unavailable; try again shortly"
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def error_response(err: ServiceError) -> Response:
    """``err`` as RFC 6749 §5.2 JSON, never cached."""
    response = no_store(jsonify(err.body()))
    response.status_code = err.status_code
    for name, value in err.headers().items():
        response.headers[name] = value
    return response


def log_refusal(err: ServiceError) -> None:
    """A refused request (4xx) as a security event: the route, status and error code, never the description
    (it may quote what the client sent). Rate limits have their own event (``rate_limit``)."""
    if not 400 <= err.status_code < 500 or err.status_code == 429:
        return
    rule = request.url_rule
    level = logging.WARNING if err.status_code in (401, 403) else logging.INFO
    security_event("refusal", "request refused", level=level, route=rule.rule if rule is not None else "unmatched",
                   status=err.status_code, error=err.error)


def register_error_handlers(app: Flask) -> None:
    """Every failure becomes a JSON error or the person's error page; nothing leaks a stack trace or internal
    detail."""

    @app.errorhandler(ServiceError)
    def _service_error(err: ServiceError) -> Response:
        log_refusal(err)
        return error_response(err)

    @app.errorhandler(PageError)
    def _page_error(err: PageError) -> Response:
        return error_page(err.message, err.status)

    @app.errorhandler(StoreUnavailable)
    def _store_unavailable(err: StoreUnavailable) -> Response:
        log.error("store unavailable: %s", err)
        return error_response(TemporarilyUnavailable(STORE_UNAVAILABLE))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        code = err.code or 500
        response = error_response(ServiceError(err.description or err.name, status_code=code))
        response.set_data(jsonify({"error": HTTP_ERROR_CODES.get(code, "invalid_request"),
                                   "error_description": err.name}).get_data())
        if code == 405 and err.get_response().headers.get("Allow"):
            response.headers["Allow"] = err.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        incident = secrets.token_hex(6)
        log.exception("unexpected error %s on %s %s", incident, request.method, request.path)
        return error_response(ServerError(f"internal error (reference {incident})"))
