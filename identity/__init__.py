"""Pseudonymous identity and token service.

``identity.create_app`` builds the Flask application. It is imported lazily, so that a downstream
service can use ``identity.verify`` without pulling in the server's Flask, store or vault pieces.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
