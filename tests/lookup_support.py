"""Typed helpers for lookups a test takes as found: they assert, then hand back the narrowed value."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def present(value: T | None) -> T:
    """``value``, asserted not None (a lookup the test expects to find something)."""
    assert value is not None
    return value
