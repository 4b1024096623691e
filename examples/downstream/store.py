"""The example service's own SQLite store: records keyed by pseudonym, nothing else about a person."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .records import NewRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id          INTEGER PRIMARY KEY,
    pseudonym   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    occurred_at INTEGER,
    received_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS records_by_pseudonym ON records (pseudonym, id);
"""
MAX_PAGE = 100


class RecordStore:
    """One connection (open it per request, close it at teardown); autocommit single-statement writes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")

    @staticmethod
    def create_schema(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path)
        try:
            db.executescript(SCHEMA)
        finally:
            db.close()

    def close(self) -> None:
        self._db.close()

    def add(self, *, pseudonym: str, client_id: str, record: NewRecord, now: int) -> dict[str, Any]:
        row = self._db.execute(
            "INSERT INTO records (pseudonym, client_id, kind, data, occurred_at, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
            (pseudonym, client_id, record.kind, json.dumps(record.data, sort_keys=True), record.occurred_at, now),
        ).fetchone()
        return _view(row)

    def list_for(self, pseudonym: str, *, after: int = 0, limit: int = MAX_PAGE) -> list[dict[str, Any]]:
        """The pseudonym's own records, oldest first; nobody else's, ever."""
        rows = self._db.execute(
            "SELECT * FROM records WHERE pseudonym = ? AND id > ? ORDER BY id LIMIT ?",
            (pseudonym, after, max(1, min(limit, MAX_PAGE))),
        ).fetchall()
        return [_view(r) for r in rows]


def _view(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "pseudonym": row["pseudonym"], "client_id": row["client_id"], "kind": row["kind"],
            "data": json.loads(row["data"]), "occurred_at": row["occurred_at"], "received_at": row["received_at"]}
