"""MongoDB backend specifics that the shared contract cannot show."""

from __future__ import annotations

import ssl

import mongomock
import pymongo
import pytest

from identity.store import MongoStore, StoreUnavailable
from identity.store.mongo import mongo_tls_problem
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


# -- TLS detection (production refuses the store's traffic in clear: tests/test_config.py) ----------

@pytest.mark.parametrize("uri", [
    "mongodb://db.example.org/identity", "mongodb://u:p@db.example.org:27017/identity?retryWrites=true",
    "mongodb://db.example.org/identity?tls=true", "mongodb://db.example.org/identity?ssl=true",
    "mongodb://db.example.org/identity?tls=false", "mongodb://db.example.org/identity?tls=true&tlsInsecure=true",
    "mongodb://db.example.org/identity?ssl=true&tlsAllowInvalidCertificates=true",
    "mongodb://db.example.org/identity?tls=true&tlsAllowInvalidHostnames=true",
    "mongodb://db1.example.org,db2.example.org/identity?replicaSet=rs0&tls=true",
])
def test_tls_detection_agrees_with_pymongo(uri):
    """TLS as we judge it from the URI is what pymongo's own client configures: on, with checked certificates."""
    client = pymongo.MongoClient(uri, connect=False)
    try:
        context = client.options.pool_options._ssl_context
        checked = context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    finally:
        client.close()
    assert (mongo_tls_problem(uri) is None) == checked


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:///var/identity.sqlite3", None),
    ("mongodb://localhost/identity", None),
    ("mongodb://127.0.0.1:27017,[::1]:27018/identity", None),
    ("mongodb://%2Ftmp%2Fmongodb-27017.sock/identity", None),
    ("mongodb+srv://u:p@cluster.example.net/identity", None),
    ("mongodb+srv://cluster.example.net/identity?tls=false", "MongoDB at cluster.example.net without TLS"),
    ("mongodb://localhost,db.example.org/identity", "MongoDB at db.example.org without TLS"),
    ("mongodb://db.example.org/identity?tls=maybe", "not a valid MongoDB URI"),
    ("mongodb://u:secret-pw@db.example.org:port/identity", "not a valid MongoDB URI"),
    ("mongodb:///identity", "not a valid MongoDB URI"),
])
def test_tls_problem_names_the_remote_host_never_the_password(uri, expected):
    problem = mongo_tls_problem(uri)
    assert problem == expected if expected is None else problem.startswith(expected)
    assert "secret-pw" not in (problem or "")


def test_durable_writes_are_majority_writes_and_the_others_w1():
    from identity.store import Collection

    durable = Collection(name="kept", key="id", fields={"id": str, "n": int})
    relaxed = Collection(name="relaxed", key="id", fields={"id": str, "n": int}, durable=False)
    client = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/identity", client_factory=lambda: client)
    concerns: list[dict] = []
    collection = store._collection

    def spy(coll, durable_write=None):
        handle = collection(coll, durable_write)
        concerns.append(handle.write_concern.document)
        return handle

    store._collection = spy  # type: ignore[method-assign]
    store.insert(durable, {"id": "a"})
    store.insert(durable, {"id": "b"}, durable=False)
    store.insert(relaxed, {"id": "c"})
    store.update(relaxed, {"id": "c"}, {"n": 1}, durable=True)
    majority, one = {"w": "majority", "wtimeout": 10000}, {"w": 1}
    assert concerns == [majority, one, one, majority]
