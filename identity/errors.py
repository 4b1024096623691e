"""Error types and the one place that renders them (RFC 6749 §5.2 JSON, ``Cache-Control: no-store``)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .logs import security_event
from .store import StoreUnavailable

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error answered to the caller: an RFC 6749 ``error`` code, a description, a status."""

    error = "invalid_request"
    status_code = 400

    def __init__(self, description: str = "", *, status_code: int | None = None) -> None:
        super().__init__(description or self.error)
        self.description = description
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"error": self.error}
        if self.description:
            payload["error_description"] = self.description
        return payload

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(ServiceError):
    error = "invalid_request"


class InvalidClient(ServiceError):
    error = "invalid_client"
    status_code = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="token"'}


class InvalidGrant(ServiceError):
    error = "invalid_grant"


class UnauthorizedClient(ServiceError):
    error = "unauthorized_client"


class UnsupportedGrantType(ServiceError):
    error = "unsupported_grant_type"


class InvalidScope(ServiceError):
    error = "invalid_scope"


class InvalidTarget(ServiceError):
    error = "invalid_target"


class AccessDenied(ServiceError):
    error = "access_denied"
    status_code = 403


class NotFound(ServiceError):
    error = "not_found"
    status_code = 404


class TemporarilyUnavailable(ServiceError):
    error = "temporarily_unavailable"
    status_code = 503


def error_response(err: ServiceError) -> Response:
    response = jsonify(err.body())
    response.status_code = err.status_code
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    for name, value in err.headers().items():
        response.headers[name] = value
    if err.status_code == 503:
        response.headers["Retry-After"] = "5"
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
    """Every failure becomes a JSON error; nothing leaks a stack trace or internal detail."""

    @app.errorhandler(ServiceError)
    def _service_error(err: ServiceError) -> Response:
        log_refusal(err)
        return error_response(err)

    @app.errorhandler(StoreUnavailable)
    def _store_unavailable(err: StoreUnavailable) -> Response:
        log.error("store unavailable: %s", err)
        return error_response(
            TemporarilyUnavailable("the identity store is unavailable; try again shortly")
        )

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        code = err.code or 500
        name = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(code, "invalid_request")
        response = error_response(ServiceError(err.description or err.name, status_code=code))
        response.set_data(jsonify({"error": name, "error_description": err.name}).get_data())
        if code == 405 and err.get_response().headers.get("Allow"):
            response.headers["Allow"] = err.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        incident = secrets.token_hex(6)
        log.exception("unexpected error %s on %s %s", incident, request.method, request.path)
        failure = ServiceError(f"internal error (reference {incident})", status_code=500)
        failure.error = "server_error"
        return error_response(failure)
