"""MongoDB backend specifics that the shared contract cannot show."""

from __future__ import annotations

import dataclasses
import ssl
import time
from typing import Any

import mongomock
import mongomock.collection
import pymongo
import pytest

from identity.oauth.records import GRANTS
from identity.store import In, Lt, MongoStore, StoreUnavailable
from identity.store.mongo import mongo_tls_problem, uri_sets_timeout
from identity.vault import IDENTITIES

from .mongo_wire import SlowMongo


def test_real_client_uses_majority_writes_and_retries():
    store = MongoStore("mongodb://db1.invalid,db2.invalid/identity?replicaSet=rs0")
    client = store._real_client()
    try:
        assert client.write_concern.document["w"] == "majority"
        assert client.options.retry_writes and client.options.retry_reads
    finally:
        client.close()


def test_database_name_comes_from_the_uri():
    client: pymongo.MongoClient[dict[str, Any]] = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/vault_db", client_factory=lambda: client)
    store.insert(IDENTITIES, {"pseudonym": "a" * 26, "status": "active", "created_at": 1})
    assert client["vault_db"]["identities"].count_documents({}) == 1


def test_indexes_are_created_including_partial_unique_blind_index():
    client: pymongo.MongoClient[dict[str, Any]] = mongomock.MongoClient()
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


def test_a_client_that_cannot_be_made_is_store_unavailable_and_a_503():
    """A ``mongodb+srv://`` client looks its hosts up in DNS as it is made: a failed lookup in a freshly forked
    worker is the store being unavailable, never a 500."""
    def unresolvable():
        raise pymongo.errors.ConfigurationError("The resolution lifetime expired after 20.0 seconds")
    store = MongoStore("mongodb+srv://cluster.example.org/identity", client_factory=unresolvable)
    for operation in (store.ping, lambda: store.get(IDENTITIES, "x"), lambda: store.count(IDENTITIES, {})):
        with pytest.raises(StoreUnavailable):
            operation()


def test_the_app_answers_503_while_the_client_cannot_be_made(settings):
    from identity import create_app
    made = []

    def factory():
        made.append(1)
        if len(made) == 1:
            return mongomock.MongoClient()
        raise pymongo.errors.ConfigurationError("The DNS query name does not exist")

    app = create_app(dataclasses.replace(settings, db_uri="mongodb://localhost/identity"), mongo_client_factory=factory)
    app.extensions["identity"].store.close()  # as in a freshly forked worker: the next call makes a client
    client = app.test_client()
    assert client.get("/readyz").status_code == 503
    token = client.post("/token", data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"})
    assert token.status_code == 503 and token.json["error"] == "temporarily_unavailable"


def test_a_server_that_stops_answering_is_store_unavailable_at_the_operation_deadline():
    """A server that takes a query and never answers (a hung primary, a half-open connection) must not hold
    the worker: each operation gives up at its deadline, retries included."""
    with SlowMongo(delay=None) as server:
        store = MongoStore(server.uri(), operation_timeout=0.5)
        for operation in (lambda: store.get(IDENTITIES, "x"), lambda: store.count(IDENTITIES, {}),
                          lambda: store.update(IDENTITIES, {"pseudonym": "x"}, {"status": "restricted"})):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                operation()
            assert time.monotonic() - started < 3
        store.close()
        assert server.commands  # the queries reached the server: it was its silence that ran out


def test_the_uri_timeout_wins_over_the_stores_deadline():
    assert uri_sets_timeout("mongodb://h/identity?replicaSet=rs0&timeoutMS=2500")
    assert uri_sets_timeout("mongodb://h/identity?TIMEOUTMS=0")
    assert not uri_sets_timeout("mongodb://h/identity?connectTimeoutMS=2500")
    assert not uri_sets_timeout("mongodb://h/identity")
    with SlowMongo(delay=1.5) as server:
        patient = MongoStore(server.uri("timeoutMS=3000"), operation_timeout=0.3)
        assert patient.get(IDENTITIES, "x") is None  # the URI's 3 s, not the store's 0.3 s
        patient.close()
        impatient = MongoStore(server.uri("timeoutMS=300"), operation_timeout=30)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            impatient.get(IDENTITIES, "x")
        assert time.monotonic() - started < 1.4
        impatient.close()


def test_the_service_bounds_each_operation_and_the_scripts_do_not(settings, monkeypatch):
    """The online service answers 503 when the store stops answering; an operator script (an index build, a
    purge) waits for a slow server instead of aborting its work part-way."""
    from identity import app as app_module
    from identity import create_app
    from identity.services import build_services
    monkeypatch.setattr(app_module, "REQUEST_OPERATION_TIMEOUT_SECONDS", 0.5)
    with SlowMongo(delay=None) as server:
        app = create_app(dataclasses.replace(settings, db_uri=server.uri()))
        client = app.test_client()
        started = time.monotonic()
        token = client.post("/token", data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"})
        assert token.status_code == 503 and token.json["error"] == "temporarily_unavailable"
        assert client.get("/readyz").status_code == 503
        assert time.monotonic() - started < 6
        app.extensions["identity"].store.close()
    with SlowMongo(delay=1.0) as server:  # the scripts' services (identity.cli.services_from_environment)
        services = build_services(dataclasses.replace(settings, db_uri=server.uri()))
        assert services.store.prepare(IDENTITIES)["indexes"] == []  # answered after 1 s, not cut off
        services.store.close()


def test_writes_that_name_one_document_go_out_as_single_document_writes(monkeypatch):
    """pymongo retries a write after a failover only as update_one/delete_one: a rotation applied just before a
    step-down is then answered with its first outcome instead of a 503 whose retry looks like a token reuse."""
    calls = []
    for method in ("update_one", "update_many", "delete_one", "delete_many"):
        original = getattr(mongomock.collection.Collection, method)

        def spy(self, *args, _name=method, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(mongomock.collection.Collection, method, spy)
    client: pymongo.MongoClient[dict[str, Any]] = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/identity", client_factory=lambda: client)
    store.insert(GRANTS, {"grant_id": "g1", "client_id": "c", "subject": "s", "audience": "a", "scope": "",
                          "created_at": 1, "expires_at": 2, "refresh_hash": "h1", "refresh_family": "f1"})
    assert store.update(GRANTS, {"grant_id": "g1", "revoked_at": None, "refresh_hash": "h1"}, {"refresh_hash": "h2"}) == 1
    assert store.update(GRANTS, {"refresh_family": "f1"}, {"refreshed_at": 5}) == 1  # a unique field
    assert store.update(GRANTS, {"subject": "s", "revoked_at": None}, {"revoked_at": 9}) == 1  # many, maybe
    assert store.update(GRANTS, {"grant_id": In(("g1", "g2"))}, {"scope": "x"}) == 1
    assert store.delete(GRANTS, {"grant_id": "g1"}) == 1
    assert store.delete(GRANTS, {"expires_at": Lt(3)}) == 0
    assert calls == ["update_one", "update_one", "update_many", "update_many", "delete_one", "delete_many"]


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
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, connect=False)
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
    assert problem == expected if expected is None else (problem is not None and problem.startswith(expected))
    assert "secret-pw" not in (problem or "")


def test_durable_writes_are_majority_writes_and_the_others_w1():
    from identity.store import Collection

    durable = Collection(name="kept", key="id", fields={"id": str, "n": int})
    relaxed = Collection(name="relaxed", key="id", fields={"id": str, "n": int}, durable=False)
    client: pymongo.MongoClient[dict[str, Any]] = mongomock.MongoClient()
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


def test_a_collection_with_majority_reads_is_read_at_majority_and_keeps_its_write_concerns():
    from identity.store import Collection

    chain = Collection(name="chain", key="id", fields={"id": str, "n": int}, majority_reads=True)
    plain = Collection(name="plain", key="id", fields={"id": str, "n": int})
    client: pymongo.MongoClient[dict[str, Any]] = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/identity", client_factory=lambda: client)
    used: list[tuple[str, str | None, dict]] = []
    collection = store._collection

    def spy(coll, durable_write=None):
        handle = collection(coll, durable_write)
        used.append((coll.name, handle.read_concern.level, handle.write_concern.document))
        return handle

    store._collection = spy  # type: ignore[method-assign]
    store.insert(chain, {"id": "a"})
    store.insert(chain, {"id": "b"}, durable=False)
    store.get(chain, "a")
    list(store.find(chain, {}))
    store.count(chain, {})
    store.get(plain, "a")
    majority, one = {"w": "majority", "wtimeout": 10000}, {"w": 1}
    assert used == [("chain", "majority", majority), ("chain", "majority", one)] + \
        [("chain", "majority", majority)] * 3 + [("plain", None, majority)]  # None: the server's default, local


# -- bulk operations on a real server's terms ------------------------------------------------------

class _BulkSpy:
    """A collection handle that records bulk calls and can answer with a server's ``BulkWriteError``."""

    def __init__(self, handle, details: dict | None = None) -> None:
        self._handle, self._details = handle, details
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def insert_many(self, docs, **options):
        self.calls.append(("insert_many", options | {"write_concern": self._handle.write_concern.document}))
        if self._details is not None:
            raise pymongo.errors.BulkWriteError(self._details)
        return self._handle.insert_many(docs, **options)

    def find(self, query, projection=None):
        self.calls.append(("find", {"projection": projection}))
        return self._handle.find(query, projection)


def _spied(details: dict | None = None) -> tuple[MongoStore, list]:
    client: pymongo.MongoClient[dict[str, Any]] = mongomock.MongoClient()
    store = MongoStore("mongodb://localhost/identity", client_factory=lambda: client)
    collection, spies = store._collection, []

    def spy(coll, durable_write=None):
        spies.append(_BulkSpy(collection(coll, durable_write), details))
        return spies[-1]

    store._collection = spy  # type: ignore[method-assign]
    return store, spies


def test_bulk_insert_is_unordered_with_the_write_concern_of_its_durability():
    store, spies = _spied()
    doc = {"pseudonym": "a" * 26, "status": "active", "created_at": 1}
    assert store.insert_many(IDENTITIES, [doc]) == 1
    assert store.insert_many(IDENTITIES, [doc | {"pseudonym": "b" * 26}], durable=False) == 1
    assert [spy.calls for spy in spies] == [
        [("insert_many", {"ordered": False, "write_concern": {"w": "majority", "wtimeout": 10000}})],
        [("insert_many", {"ordered": False, "write_concern": {"w": 1}})]]


@pytest.mark.parametrize("details, counted", [
    ({"writeErrors": [{"index": 0, "code": 11000}], "nInserted": 4, "writeConcernErrors": []}, 4),
    ({"writeErrors": [{"index": 0, "code": 11000}, {"index": 2, "code": 121}], "nInserted": 3,
      "writeConcernErrors": []}, None),  # 121: document failed validation
    ({"writeErrors": [], "nInserted": 5, "writeConcernErrors": [{"code": 64}]}, None),  # 64: wtimeout
])
def test_a_bulk_insert_error_is_a_skipped_duplicate_or_store_unavailable(details, counted):
    store, _ = _spied(details)
    docs = [{"pseudonym": f"{c}" * 26, "status": "active"} for c in "abcde"]
    if counted is None:
        with pytest.raises(StoreUnavailable):
            store.insert_many(IDENTITIES, docs)
    else:
        assert store.insert_many(IDENTITIES, docs) == counted


def test_a_bulk_read_asks_the_server_for_the_fields_only():
    store, spies = _spied()
    store.insert_many(IDENTITIES, [{"pseudonym": f"{c}" * 26, "status": "active", "sealed_email": "x"}
                                   for c in "abc"])
    rows = [row for batch in store.find_fields(IDENTITIES, {}, ("status",), batch_size=2) for row in batch]
    assert rows == [("active",)] * 3
    assert [call for call in spies[-1].calls] == [("find", {"projection": {"status": 1, "_id": 1}})] * 2
