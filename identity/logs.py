"""Logging: one JSON line per record, with e-mail addresses scrubbed as a last line of defence.

The vault never passes an e-mail to a logger; the scrubber exists for the mistake nobody has made
yet (an exception message from a library, a stray f-string).
"""

from __future__ import annotations

import json
import logging
import re

EMAIL_PATTERN = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+\.[^\s@<>\"'(),;:]+")
REDACTED = "<redacted-email>"
_STANDARD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


def scrub(text: str) -> str:
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
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
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
        handler._identity_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = True
    for existing in logger.filters:
        if isinstance(existing, EmailScrubber):
            break
    else:
        logger.addFilter(EmailScrubber())
