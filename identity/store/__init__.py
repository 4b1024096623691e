"""Storage: one small contract (``base.Store``), an embedded SQLite backend and a MongoDB backend."""

from __future__ import annotations

from .base import (
    Collection,
    Document,
    DuplicateKeyError,
    Gt,
    In,
    Lt,
    Order,
    Store,
    StoreError,
    StoreUnavailable,
    find_one,
)
from .mongo import ClientFactory, MongoStore
from .sqlite import SQLiteStore, path_from_uri

__all__ = [
    "Collection", "Document", "DuplicateKeyError", "Gt", "In", "Lt", "Order", "Store", "StoreError",
    "StoreUnavailable", "find_one", "MongoStore", "SQLiteStore", "open_store",
]


def open_store(uri: str, *, mongo_client_factory: ClientFactory | None = None,
               mongo_operation_timeout: float | None = None) -> Store:
    """The store named by ``IDENTITY_DB_URI``; connections open lazily, on first use.

    ``mongo_operation_timeout``: a MongoDB store's deadline per operation in seconds, unless the URI sets
    ``timeoutMS`` (``mongo`` module docstring); an SQLite store has its own (``BUSY_TIMEOUT_SECONDS``).
    """
    if uri.startswith("sqlite:///"):
        return SQLiteStore(path_from_uri(uri))
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return MongoStore(uri, client_factory=mongo_client_factory, operation_timeout=mongo_operation_timeout)
    raise ValueError("IDENTITY_DB_URI must start with sqlite:///, mongodb:// or mongodb+srv://")
