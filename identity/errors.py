"""The service's error types, as data, without Flask (``identity.web.errors`` is the one renderer).

The error model, one family per audience:

* ``ServiceError`` and its subclasses: an OAuth error in the RFC 6749 §5.2 shape, an ``error`` code,
  an ``error_description``, an HTTP status and the extra headers it needs (``WWW-Authenticate``,
  ``Retry-After``). An API endpoint answers it as JSON; the authorization endpoint and the upstream
  login deliver the same data at the app's redirect URI (``RedirectError``, ``UpstreamFailure``).
* ``PageError``: a failure in a browser flow that cannot be sent to an app, answered with the
  person's error page (a plain-language message from the page catalogue and a status).
* Library errors stay with their library: ``identity.verify.errors`` (shipped to downstream
  services, so dependency-free and with its own RFC 6750 codes), ``identity.breach.errors`` (the
  DPO's scripts), ``identity.store.StoreError`` (the web renderer answers ``StoreUnavailable`` 503).

Modules that raise these never import Flask; ``identity.web.errors.register_error_handlers`` turns
every one of them (and anything unexpected) into a response, once, for the whole app.
"""

from __future__ import annotations

from typing import Any

RETRY_AFTER_SECONDS = 5  # what a 503 tells the caller to wait


class ServiceError(Exception):
    """An error answered to the caller: an RFC 6749 ``error`` code, a description, a status."""

    error = "invalid_request"
    status_code = 400
    description = ""
    retry_after: int | None = None  # seconds; a 503 says ``RETRY_AFTER_SECONDS`` unless set

    def __init__(self, description: str = "", *, status_code: int | None = None) -> None:
        super().__init__(description or self.description or self.error)
        if description:
            self.description = description
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"error": self.error}
        if self.description:
            payload["error_description"] = self.description
        return payload

    def headers(self) -> dict[str, str]:
        retry_after = self.retry_after
        if retry_after is None and self.status_code == 503:
            retry_after = RETRY_AFTER_SECONDS
        return {} if retry_after is None else {"Retry-After": str(retry_after)}


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


class ServerError(ServiceError):
    """RFC 6749 ``server_error``: our fault, never the caller's; the description names no internals."""

    error = "server_error"
    status_code = 500


class PageError(Exception):
    """A browser flow ends on the person's error page: ``message`` (an English page-catalogue text,
    translated when shown; never anything the request sent) and ``status``. Never a redirect."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
