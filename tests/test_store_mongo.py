"""MongoDB backend specifics that the shared contract cannot show."""

from __future__ import annotations

import mongomock
import pymongo
import pytest

from identity.store import MongoStore, StoreUnavailable
from identity.vault import IDENTITIES


def test_real_client_uses_majority_writes_and_retries():
    store = MongoStore("mongodb://db1.invalid,db2.invalid/identity?replicaSet=rs0")
    client = store._real_client()
    try:
        assert client.write_concern.document["w"] == "majority"
        assert client.options.retry_writes and client.options.retry_reads
    finally:
        client.close()


def test_database_name_comes_from_the_uri():
    client = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/vault_db", client_factory=lambda: client)
    store.insert(IDENTITIES, {"pseudonym": "a" * 26, "status": "active", "created_at": 1})
    assert client["vault_db"]["identities"].count_documents({}) == 1


def test_indexes_are_created_including_partial_unique_blind_index():
    client = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/identity", client_factory=lambda: client)
    store.count(IDENTITIES, {})
    info = client["identity"]["identities"].index_information()
    assert info["u_blind_index"]["unique"] is True
    assert "partialFilterExpression" in info["u_blind_index"]


def test_unreachable_server_is_store_unavailable():
    store = MongoStore(
        "mongodb://127.0.0.1:9/identity",
        client_factory=lambda: pymongo.MongoClient("mongodb://127.0.0.1:9", serverSelectionTimeoutMS=200),
    )
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.get(IDENTITIES, "x")
