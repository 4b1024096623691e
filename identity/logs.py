"""Logging: one JSON line per record, with e-mail addresses scrubbed as a last line of defence.

The vault never passes an e-mail to a logger; the scrubber exists for the mistake nobody has made
yet (an exception message from a library, a stray f-string).

Every record written while a request is handled carries its ``request_id`` (``RequestContext``, set by
``identity.web.telemetry``). Security events (``security_event``) are records with an ``event`` name and
only the fields ``EVENT_FIELDS`` allows for it: the documented set (docs/deploy.md, "Logs"), none of them
personal data (never an e-mail address, pseudonym, token, secret or client address).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

EMAIL_PATTERN = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+\.[^\s@<>\"'(),;:]+")
REDACTED = "<redacted-email>"
_STANDARD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


#: The security events and the fields each may carry (besides time, level, logger, message, request_id).
EVENT_FIELDS: dict[str, frozenset[str]] = {
    # a sign-in through the upstream IdP: outcome success | refused | denied | unavailable | error
    "login": frozenset({"outcome", "reason", "error", "client_id"}),
    # an OAuth request refused (4xx): the RFC 6749 error code, never its description (it may quote input)
    "refusal": frozenset({"route", "status", "error", "client_id"}),
    # a rate limit reached: which limit and budget, never the address counted
    "rate_limit": frozenset({"endpoint", "limit", "budget"}),
    # this process noticed a new signing-key manifest (every instance logs it once per rotation)
    "key_rotation": frozenset({"active_kid", "next_kid", "published_kids"}),
    # identities erased: who asked (self-service, operator, retention), how many; never which
    "erasure": frozenset({"via", "identities", "grants_revoked"}),
}
SECURITY_LOGGER = "identity.security"


@dataclass
class RequestContext:
    """What the log records of one request share: its id, and the client once it is known."""

    request_id: str
    client_id: str | None = None


_REQUEST: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("identity_request", default=None)


def current_request() -> RequestContext | None:
    return _REQUEST.get()


def current_request_id() -> str | None:
    context = _REQUEST.get()
    return None if context is None else context.request_id


def enter_request(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _REQUEST.set(context)


def leave_request(token: contextvars.Token[RequestContext | None]) -> None:
    _REQUEST.reset(token)


def note_client_id(client_id: str) -> None:
    """Record the (registered, authenticated) client the current request is for, for its log line."""
    context = _REQUEST.get()
    if context is not None:
        context.client_id = client_id


def security_event(event: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one security event with its documented fields (``EVENT_FIELDS``); others are a programming error."""
    allowed = EVENT_FIELDS[event]
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"security event {event!r} has no field(s) {sorted(unknown)}")
    logging.getLogger(SECURITY_LOGGER).log(level, message, extra={"event": event, **fields})


class RequestIdFilter(logging.Filter):
    """Adds the current request's id (and client, when known) to every record made while it is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _REQUEST.get()
        if context is not None:
            if not hasattr(record, "request_id"):
                record.request_id = context.request_id
            if context.client_id is not None and not hasattr(record, "client_id"):
                record.client_id = context.client_id
        return True


def scrub(text: str) -> str:
    if "@" not in text:  # no address without one; the pattern's scan is the costliest part of a log line
        return text
    return EMAIL_PATTERN.sub(REDACTED, text)


class EmailScrubber(logging.Filter):
    """Replace anything shaped like an e-mail address in the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(str(record.msg))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in args)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
    ``message``, then the record's extra fields (``request_id``, ``event``…)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return scrub(json.dumps(entry, default=str))


def configure_logging(level: str) -> None:
    """Send ``identity.*`` records to stderr as JSON lines, scrubbed."""
    logger = logging.getLogger("identity")
    logger.setLevel(level)
    if not any(getattr(h, "_identity_handler", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler.addFilter(EmailScrubber())
        handler.addFilter(RequestIdFilter())
        handler._identity_handler = True  # type: ignore[attr-defined]  # our mark on the handler
        logger.addHandler(handler)
        logger.propagate = True
    for existing in logger.filters:
        if isinstance(existing, EmailScrubber):
            break
    else:
        logger.addFilter(EmailScrubber())
