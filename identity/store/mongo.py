"""Production store on MongoDB (pymongo): majority writes, unique indexes, retryable operations.

The client is created lazily in each process (pymongo clients are not fork-safe), indexes are
created on a collection's first use, and every driver failure that means "the database is not
there" becomes ``StoreUnavailable`` (also one while the client is made: a ``mongodb+srv://`` URI
looks its hosts up in DNS then). Unique fields use partial indexes so that many documents may lack
the field (an erased identity has no blind index).

The driver retries a write once after a failover only where the write names one document
(``update_one``, ``delete_one``; the server recognises the retry and answers it with the first
outcome). So an update or delete whose condition pins the key or a unique field to a value goes out
as such (``names_one``): a refresh token's rotation, a grant's revocation, a code spent. Without it,
a rotation applied just before a primary stepped down answered 503, and the app's retry with the
same token then looked like a reuse and revoked the family.

Every operation has a deadline when the store is opened with ``operation_timeout`` (the online service's
is ``REQUEST_OPERATION_TIMEOUT_SECONDS``) or the URI sets ``timeoutMS``, which wins: pymongo's client-side
operation timeout, which bounds server selection, the wait for a connection, the round trip and, through
``maxTimeMS``, the server's own work, retries included. Without one, a server that accepts a query and never
answers holds the worker until it is killed. The operator scripts open the store without a deadline, since
an index build or a purge over millions of documents may rightly take longer.
"""

from __future__ import annotations

import functools
import os
import threading
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import pymongo
from pymongo import errors as mongo_errors
from pymongo.read_concern import ReadConcern
from pymongo.uri_parser import split_hosts, split_options
from pymongo.write_concern import WriteConcern

from ..verify.http import is_loopback_host
from ..metrics import store_operation
from .base import (BULK_BATCH, Collection, Document, DuplicateKeyError, Gt, In, Lt, Order, StoreUnavailable,
                   Where, names_one)

BACKEND = "mongodb"  # the metrics' backend label
ClientFactory = Callable[[], Any]
SERVER_SELECTION_TIMEOUT_MS = 5000
REQUEST_OPERATION_TIMEOUT_SECONDS = 10.0  # the online service's deadline per operation (module docstring)
SCHEME, SRV_SCHEME = "mongodb://", "mongodb+srv://"
UNCHECKED_TLS_OPTIONS = ("tlsinsecure", "tlsallowinvalidcertificates", "tlsallowinvalidhostnames")
DURABLE = WriteConcern(w="majority", wtimeout=10000)  # journaled on a majority (writeConcernMajorityJournalDefault)
NOT_DURABLE = WriteConcern(w=1)  # applied on the primary, journaled within its commit interval
MAJORITY_READ = ReadConcern("majority")  # Collection.majority_reads: nothing read can be rolled back
DUPLICATE_KEY = 11000  # the server's error code for a unique index clash


def mongo_tls_problem(uri: str) -> str | None:
    """Why a MongoDB URI would carry the store's traffic unprotected over the network, or None.

    TLS is on with ``tls=true`` / ``ssl=true`` and by default with ``mongodb+srv://``; it does not count
    with certificate checks switched off (``tlsInsecure``, ``tlsAllowInvalid*``). Loopback hosts and Unix
    sockets need no TLS. Other URIs (SQLite) give None. Parsed by pymongo's own URI helpers, no DNS.
    """
    if not uri.startswith((SCHEME, SRV_SCHEME)):
        return None
    srv = uri.startswith(SRV_SCHEME)
    body, _, query = uri[len(SRV_SCHEME if srv else SCHEME):].partition("?")
    hosts_text = body.partition("/")[0].rpartition("@")[2]
    try:
        hosts = [host for host, _ in split_hosts(hosts_text)]
        options = {name.lower(): value for name, value in split_options(query).items()} if query else {}
    except (mongo_errors.ConfigurationError, ValueError, OSError) as exc:  # OSError: an unreadable tlsCAFile
        return f"not a valid MongoDB URI ({exc})"
    remote = [h for h in hosts if not (h.startswith("/") and h.endswith(".sock")) and not is_loopback_host(h)]
    if not remote:
        return None
    if any(options.get(name) for name in UNCHECKED_TLS_OPTIONS):
        return f"MongoDB at {remote[0]} with TLS certificate checks switched off (tlsInsecure, tlsAllowInvalid*)"
    if not options.get("tls", srv):
        return f"MongoDB at {remote[0]} without TLS: add tls=true to the URI (mongodb+srv:// implies it)"
    return None


def uri_sets_timeout(uri: str) -> bool:
    """Whether a MongoDB URI names its own ``timeoutMS`` (parsed as pymongo does, without DNS)."""
    query = uri.partition("?")[2]
    try:
        return bool(query) and "timeoutms" in {name.lower() for name in split_options(query)}
    except (mongo_errors.ConfigurationError, ValueError, OSError):
        return False  # a URI pymongo refuses fails when the client is made, with its own message


class MongoStore:
    """``Store`` on one MongoDB database (the one named in the URI, default ``identity``)."""

    def __init__(self, uri: str, *, client_factory: ClientFactory | None = None,
                 operation_timeout: float | None = None) -> None:
        self.uri = uri
        # the URI's timeoutMS, when it names one, is the client's own default: no deadline is set over it
        self.operation_timeout = None if uri_sets_timeout(uri) else operation_timeout
        self._client_factory = client_factory or self._real_client
        self._client: Any = None
        self._pid: int | None = None
        self._ensured: set[str] = set()
        self._lock = threading.Lock()
        self._db_name = urlsplit(uri).path.lstrip("/") or "identity"

    def _real_client(self) -> Any:
        return pymongo.MongoClient(
            self.uri,
            serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
            connectTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
            retryWrites=True,
            retryReads=True,
            w="majority",
            appname="identity-service",
        )

    def _db(self) -> Any:
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = self._guard(self._client_factory)
                    self._pid = os.getpid()
                    self._ensured = set()
        return self._client[self._db_name]

    def _collection(self, coll: Collection, durable: bool | None = None) -> Any:
        concern = DURABLE if (coll.durable if durable is None else durable) else NOT_DURABLE
        handle = self._db().get_collection(coll.name, write_concern=concern)
        if coll.majority_reads:
            handle = handle.with_options(read_concern=MAJORITY_READ)
        if coll.name not in self._ensured:
            self._guard(lambda: self._create_indexes(handle, coll))
            self._ensured.add(coll.name)
        return handle

    @staticmethod
    def _create_indexes(handle: Any, coll: Collection) -> None:
        for name in coll.unique:
            handle.create_index(
                [(name, pymongo.ASCENDING)],
                name=f"u_{name}",
                unique=True,
                partialFilterExpression={name: {"$exists": True}},
            )
        for index in coll.indexed:
            names = (index,) if isinstance(index, str) else index
            handle.create_index([(n, pymongo.ASCENDING) for n in names], name="i_" + "_".join(names))

    def prepare(self, coll: Collection) -> dict[str, list[str]]:
        """Create the collection's indexes if missing (idempotent: an existing identical index is kept): their
        names and those created now. An index of the same name but another definition is refused by the server
        (``StoreUnavailable`` with its code)."""
        handle = self._db().get_collection(coll.name, write_concern=WriteConcern(w="majority", wtimeout=10000))

        def names() -> list[str]:
            return sorted(index["name"] for index in handle.list_indexes() if index["name"] != "_id_")

        before = self._guard(names)
        self._guard(lambda: self._create_indexes(handle, coll))
        self._ensured.add(coll.name)
        after = self._guard(names)
        return {"indexes": after, "created": sorted(set(after) - set(before))}

    def _guard(self, operation: Callable[[], Any]) -> Any:
        try:
            if self.operation_timeout is None:
                return operation()
            with pymongo.timeout(self.operation_timeout):
                return operation()
        except mongo_errors.DuplicateKeyError as exc:
            raise DuplicateKeyError("duplicate key") from exc
        except (mongo_errors.ConnectionFailure, mongo_errors.ServerSelectionTimeoutError,
                mongo_errors.WriteConcernError, mongo_errors.ExecutionTimeout,
                mongo_errors.ConfigurationError) as exc:  # ConfigurationError: e.g. an SRV lookup failed
            raise StoreUnavailable(f"MongoDB is unavailable: {type(exc).__name__}") from exc
        except mongo_errors.OperationFailure as exc:
            if exc.code == DUPLICATE_KEY:
                raise DuplicateKeyError("duplicate key") from exc
            raise StoreUnavailable(f"MongoDB refused the operation: code {exc.code}") from exc

    # -- conversion --------------------------------------------------------------------------

    @staticmethod
    def _to_mongo(coll: Collection, doc: Mapping[str, Any]) -> Document:
        out = {name: value for name, value in doc.items() if value is not None}
        if coll.key in out:
            out["_id"] = out.pop(coll.key)
        return out

    @staticmethod
    def _from_mongo(coll: Collection, raw: Mapping[str, Any]) -> Document:
        doc = {name: raw.get(name) for name in coll.fields}
        doc[coll.key] = raw.get("_id")
        return doc

    @staticmethod
    def _filter(coll: Collection, where: Where) -> Document:
        coll.check_fields(where)
        query: Document = {}
        for name, cond in where.items():
            target = "_id" if name == coll.key else name
            if isinstance(cond, Lt):
                query[target] = {"$lt": cond.value}
            elif isinstance(cond, Gt):
                query[target] = {"$gt": cond.value}
            elif isinstance(cond, In):
                query[target] = {"$in": list(cond.values)}
            elif cond is None:
                query[target] = {"$exists": False}
            else:
                query[target] = cond
        return query

    # -- operations --------------------------------------------------------------------------

    @store_operation(BACKEND, "insert")
    def insert(self, coll: Collection, doc: Document, *, durable: bool | None = None) -> None:
        coll.check_fields(doc)
        handle = self._collection(coll, durable)
        self._guard(lambda: handle.insert_one(self._to_mongo(coll, doc)))

    @store_operation(BACKEND, "insert_many")
    def insert_many(self, coll: Collection, docs: Iterable[Document], *, durable: bool | None = None) -> int:
        """``insert_many(ordered=False)`` a batch at a time: the server skips a document that clashes on a
        unique index and inserts the rest; any other write error, or a write concern not met, is
        ``StoreUnavailable``."""
        handle = self._collection(coll, durable)
        inserted, source = 0, iter(docs)
        while batch := list(islice(source, BULK_BATCH)):
            for doc in batch:
                coll.check_fields(doc)
            raws = [self._to_mongo(coll, doc) for doc in batch]
            inserted += self._guard(functools.partial(self._insert_unordered, handle, raws))
        return inserted

    @staticmethod
    def _insert_unordered(handle: Any, raws: list[Document]) -> int:
        try:
            return len(handle.insert_many(raws, ordered=False).inserted_ids)
        except mongo_errors.BulkWriteError as exc:  # an OperationFailure: answered here, not by _guard
            details = exc.details or {}
            others = [e.get("code") for e in details.get("writeErrors", ()) if e.get("code") != DUPLICATE_KEY]
            if others:
                raise StoreUnavailable(f"MongoDB refused part of a bulk insert: codes {sorted(set(others))}") from exc
            if details.get("writeConcernErrors"):
                raise StoreUnavailable("MongoDB did not confirm a bulk insert's write concern") from exc
            return int(details.get("nInserted", 0))

    @store_operation(BACKEND, "get")
    def get(self, coll: Collection, key: Any) -> Document | None:
        handle = self._collection(coll)
        raw = self._guard(lambda: handle.find_one({"_id": key}))
        return None if raw is None else self._from_mongo(coll, raw)

    @store_operation(BACKEND, "find")
    def find(
        self, coll: Collection, where: Where, *, order: Order | None = None, limit: int | None = None
    ) -> Iterator[Document]:
        handle = self._collection(coll)
        query = self._filter(coll, where)

        def run() -> list[Document]:
            cursor = handle.find(query)
            if order is not None:
                coll.check_fields([order.field])
                field = "_id" if order.field == coll.key else order.field
                cursor = cursor.sort(field, pymongo.DESCENDING if order.descending else pymongo.ASCENDING)
            if limit is not None:
                cursor = cursor.limit(int(limit))
            return list(cursor)

        return iter([self._from_mongo(coll, raw) for raw in self._guard(run)])

    def find_fields(self, coll: Collection, where: Where, fields: Sequence[str], *,
                    batch_size: int = BULK_BATCH) -> Iterator[list[tuple[Any, ...]]]:
        names = coll.bulk_read_fields(fields, batch_size)
        handle = self._collection(coll)
        return self._batches(handle, self._filter(coll, where),
                             tuple("_id" if n == coll.key else n for n in names), int(batch_size))

    def _batches(self, handle: Any, query: Document, names: tuple[str, ...],
                 batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
        projection = dict.fromkeys(names, 1) | {"_id": 1}  # the key is read too, to page on it
        raws = self._fields_page(handle, query, projection, batch_size)
        while raws:
            yield [tuple(raw.get(n) for n in names) for raw in raws]
            if len(raws) < batch_size:
                return
            after = {"_id": {"$gt": raws[-1]["_id"]}}
            raws = self._fields_page(handle, {"$and": [query, after]} if query else after, projection, batch_size)

    @store_operation(BACKEND, "find_fields")
    def _fields_page(self, handle: Any, query: Document, projection: Document, batch_size: int) -> list[Document]:
        """One page, in key order: a short query of its own (no server cursor left open between pages)."""
        return self._guard(lambda: list(
            handle.find(query, projection).sort("_id", pymongo.ASCENDING).limit(batch_size).batch_size(batch_size)))

    @store_operation(BACKEND, "count")
    def count(self, coll: Collection, where: Where) -> int:
        handle = self._collection(coll)
        return int(self._guard(lambda: handle.count_documents(self._filter(coll, where))))

    @store_operation(BACKEND, "update")
    def update(self, coll: Collection, where: Where, changes: Mapping[str, Any], *,
               durable: bool | None = None) -> int:
        coll.check_fields(changes)
        handle = self._collection(coll, durable)
        to_set = {n: v for n, v in changes.items() if v is not None}
        to_unset = {n: "" for n, v in changes.items() if v is None}
        operation: Document = {}
        if to_set:
            operation["$set"] = to_set
        if to_unset:
            operation["$unset"] = to_unset
        if not operation:
            return self.count(coll, where)
        update = handle.update_one if names_one(coll, where) else handle.update_many  # retryable: docstring
        result = self._guard(lambda: update(self._filter(coll, where), operation))
        return int(result.matched_count)

    @store_operation(BACKEND, "delete")
    def delete(self, coll: Collection, where: Where) -> int:
        handle = self._collection(coll)
        delete = handle.delete_one if names_one(coll, where) else handle.delete_many  # retryable: docstring
        result = self._guard(lambda: delete(self._filter(coll, where)))
        return int(result.deleted_count)

    @store_operation(BACKEND, "ping")
    def ping(self) -> None:
        self._guard(lambda: self._db().command("ping"))

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None
