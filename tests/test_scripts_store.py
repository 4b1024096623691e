"""``scripts/store.py migrate``: every collection's table and indexes, created once, idempotently."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import mongomock
from pymongo import MongoClient

from identity.audit import AUDIT_LOG
from identity.oauth.records import REFRESH_TOKENS
from identity.store import MongoStore, SQLiteStore
from identity.store.migrate import all_collections, migrate
from identity.vault import IDENTITIES

REPO = Path(__file__).resolve().parents[1]


def expected_indexes(coll, *, sqlite: bool) -> set[str]:
    names = {f"u_{coll.name}_{f}" if sqlite else f"u_{f}" for f in coll.unique}
    for index in coll.indexed:
        fields = "_".join((index,) if isinstance(index, str) else index)
        names.add(f"i_{coll.name}_{fields}" if sqlite else f"i_{fields}")
    return names


def test_every_collection_of_the_service_is_found():
    names = {c.name for c in all_collections()}
    assert {IDENTITIES.name, AUDIT_LOG.name, REFRESH_TOKENS.name, "clients", "audiences",
            "breach_officer_registry"} <= names
    assert "devidp_used_codes" not in names and len(names) >= 14


def run_migrate(db_uri: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env["IDENTITY_DB_URI"] = db_uri
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "store.py"), "migrate"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_migrate_creates_every_index_once_on_sqlite(tmp_path):
    db = tmp_path / "identity.sqlite3"
    first = run_migrate(f"sqlite:///{db}")
    assert first["backend"] == "sqlite" and first["created"] > 0
    by_name = {c["collection"]: c for c in first["collections"]}
    for coll in all_collections():
        assert set(by_name[coll.name]["indexes"]) == expected_indexes(coll, sqlite=True), coll.name
        assert by_name[coll.name]["created"] == by_name[coll.name]["indexes"]
    second = run_migrate(f"sqlite:///{db}")
    assert second["created"] == 0 and all(c["created"] == [] for c in second["collections"])
    conn = sqlite3.connect(db)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {c.name for c in all_collections()} <= tables


def test_migrate_is_idempotent_on_mongodb_and_the_service_finds_its_indexes():
    client: MongoClient[dict[str, Any]] = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/identity_migrate", client_factory=lambda: client)
    first = migrate(store)
    for entry in first["collections"]:
        coll = next(c for c in all_collections() if c.name == entry["collection"])
        assert set(entry["indexes"]) == expected_indexes(coll, sqlite=False)
        assert entry["created"] == entry["indexes"]
    unique = client["identity_migrate"][IDENTITIES.name].index_information()["u_blind_index"]
    assert unique["unique"] is True and unique["partialFilterExpression"] == {"blind_index": {"$exists": True}}
    assert migrate(store)["created"] == 0
    fresh = MongoStore("mongodb://localhost/identity_migrate", client_factory=lambda: client)  # another process
    assert migrate(fresh)["created"] == 0


def test_migrate_refuses_a_conflicting_index_with_a_clear_error(tmp_path):
    """An index of the same name and another definition (e.g. made by hand) is reported, not silently kept."""
    client: MongoClient[dict[str, Any]] = mongomock.MongoClient()
    client["identity_migrate"][IDENTITIES.name].create_index([("blind_index", 1)], name="u_blind_index")
    store = MongoStore("mongodb://localhost/identity_migrate", client_factory=lambda: client)
    try:
        migrate(store, [IDENTITIES])
    except Exception as exc:  # noqa: BLE001 - the store's error type is the point
        assert type(exc).__name__ == "StoreUnavailable" and "refused" in str(exc)
    else:
        raise AssertionError("a conflicting index was accepted")


def test_sqlite_prepare_matches_first_use(tmp_path):
    """migrate makes exactly what a collection's first use would make."""
    used, migrated = SQLiteStore(tmp_path / "used.sqlite3"), SQLiteStore(tmp_path / "migrated.sqlite3")
    used.count(IDENTITIES, {})
    assert migrated.prepare(IDENTITIES)["indexes"] == used.prepare(IDENTITIES)["indexes"]
    used.close()
    migrated.close()
