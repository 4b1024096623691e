"""The JSON lines the service writes to stderr, captured from the handler ``configure_logging`` installed."""

from __future__ import annotations

import io
import json
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import pytest

Lines = Callable[[], list[dict[str, Any]]]


@contextmanager
def captured_lines() -> Iterator[Lines]:
    """Every JSON line written meanwhile (level INFO), parsed; the handler's stream restored after.
    An app must have been built (``create_app`` installs the handler)."""
    logger = logging.getLogger("identity")
    handler = next(h for h in logger.handlers if getattr(h, "_identity_handler", False))
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous_stream, previous_level = handler.setStream(buffer), logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        handler.setStream(previous_stream)
        logger.setLevel(previous_level)


@pytest.fixture
def log_lines(oauth_app: Any) -> Iterator[Lines]:
    with captured_lines() as lines:
        yield lines


def requests_logged(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "identity.access"]


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]
