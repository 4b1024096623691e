"""The store contract: flat documents in named collections, with the few atomic operations we need.

Every write is a single-document (or single-statement) operation, so both backends are atomic
without multi-document transactions: uniqueness comes from unique indexes, one-time use from a
conditional ``update`` that reports how many documents it changed. The bulk insert (``insert_many``)
is unordered: each document is inserted or skipped on its own, never the batch as a whole.

Durability. A *durable* write has reached stable storage when it returns (SQLite ``synchronous=FULL``:
the log is fsync'd at its commit; MongoDB: majority write concern, journaled). A *non-durable* write
has reached the database when it returns, so it survives the process (``kill -9``, a crash) and is
visible to every other process at once, but it may be lost with the last moments before a power cut
or a failover (SQLite: committed to the log without an fsync of its own; MongoDB: ``w=1``). Both
backends keep writes in one order, so what a power cut can lose is only ever a *tail*: every durable
write makes all earlier writes durable too (SQLite: one log, synced through that commit; MongoDB: the
oplog is replicated in order). Many non-durable writes thus share the next durable write's sync: a
group commit. A write is non-durable only where losing it fails closed (``Collection.durable``, or
``durable=`` on the call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

Document = dict[str, Any]
Where = Mapping[str, Any]
BULK_BATCH = 10_000  # documents per batch of a bulk read or insert: a million rows in bounded memory


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or cannot write right now (answered as 503)."""


class DuplicateKeyError(StoreError):
    """An insert or update would break a unique constraint."""


@dataclass(frozen=True)
class Lt:
    """Filter: the field is present and less than ``value``."""

    value: Any


@dataclass(frozen=True)
class Gt:
    """Filter: the field is present and greater than ``value``."""

    value: Any


@dataclass(frozen=True)
class In:
    """Filter: the field equals one of ``values``."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Collection:
    """A collection's schema: its fields and types, primary key, unique and indexed fields.

    Field types are ``str``, ``int``, ``float``, ``bool`` or ``list``/``dict`` (stored as JSON by
    SQLite). Unique fields may be ``None`` in many documents (partial unique index).

    ``durable=False`` marks records whose loss in a power cut is harmless and fails closed (e.g.
    the record of an issued access token): their writes are non-durable unless a call asks otherwise
    (module docstring).

    ``majority_reads=True`` makes every read see only writes that a failover cannot take back (MongoDB:
    read concern "majority"; SQLite has no replicas, so every committed write is one): for records where
    what is read decides what is written next, as the audit chain's head decides the next record's place.
    """

    name: str
    key: str
    fields: Mapping[str, type]
    unique: tuple[str, ...] = ()
    indexed: tuple[str | tuple[str, ...], ...] = ()
    durable: bool = True
    majority_reads: bool = False

    def check_fields(self, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in self.fields]
        if unknown:
            raise self.unknown_fields(unknown)

    def unknown_fields(self, names: Iterable[str]) -> ValueError:
        """The error for a call naming fields this collection does not have."""
        return ValueError(f"{self.name}: unknown field(s) {[n for n in names if n not in self.fields]}")

    def bulk_read_fields(self, fields: Sequence[str], batch_size: int) -> tuple[str, ...]:
        """``fields`` checked for a ``find_fields`` call (and its ``batch_size``), as a tuple."""
        names = tuple(fields)
        self.check_fields(names)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        return names


@dataclass(frozen=True)
class Order:
    """Sort order for ``find``: ``Order("seq", descending=True)``."""

    field: str
    descending: bool = False


class Store(Protocol):
    """What the service needs from a database. Implementations: SQLite (default) and MongoDB.

    A collection's table or indexes are created on its first use in a process, so each module
    declares the ``Collection`` it owns and nothing else needs to know about it.
    """

    def insert(self, coll: Collection, doc: Document, *, durable: bool | None = None) -> None:
        """Insert one document; raise ``DuplicateKeyError`` if a unique field clashes.

        ``durable``: this write's durability (module docstring); None: the collection's.
        """

    def insert_many(self, coll: Collection, docs: Iterable[Document], *, durable: bool | None = None) -> int:
        """Insert many documents, ``BULK_BATCH`` at a time; return how many were inserted.

        Unordered, as MongoDB's ``insert_many(ordered=False)``: a document that would break a unique
        constraint (against a stored document or an earlier one of the same call) is skipped, the others
        are inserted; compare the count with what was given. Not atomic as a whole: ``StoreUnavailable``
        part-way may leave earlier batches written. ``durable``: as for ``insert``.
        """

    def get(self, coll: Collection, key: Any) -> Document | None:
        """The document with primary key ``key``, or None."""

    def find(
        self, coll: Collection, where: Where, *, order: Order | None = None, limit: int | None = None
    ) -> Iterator[Document]:
        """Documents matching every condition in ``where`` (equality, ``Lt``, ``Gt``, ``In``)."""

    def find_fields(self, coll: Collection, where: Where, fields: Sequence[str], *,
                    batch_size: int = BULK_BATCH) -> Iterator[list[tuple[Any, ...]]]:
        """Only ``fields`` of the documents matching ``where``, as tuples in that order, in batches of at
        most ``batch_size``, in primary-key order: a bulk read (a million rows, e.g. a breach run).

        Each batch is a short read of its own (paged on the primary key), so no cursor or read
        transaction stays open between batches and no document is built; a document written meanwhile
        may or may not be seen. Absent fields read as None.
        """

    def count(self, coll: Collection, where: Where) -> int:
        """How many documents match ``where``."""

    def update(self, coll: Collection, where: Where, changes: Mapping[str, Any], *,
               durable: bool | None = None) -> int:
        """Set fields on every matching document atomically; return how many matched.

        ``durable``: this write's durability (module docstring); None: the collection's.
        """

    def delete(self, coll: Collection, where: Where) -> int:
        """Delete every matching document; return how many were deleted.

        Atomic per document, not over many: on SQLite a delete that may match many (``names_one`` false)
        goes in batches, each a short write of its own, so that a purge of millions never holds up the
        other writers.
        """

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` if the store cannot be reached."""

    def prepare(self, coll: Collection) -> dict[str, list[str]]:
        """Create the collection's table or indexes now if missing (idempotent): ``{"indexes": [names],
        "created": [names created by this call]}``."""

    def close(self) -> None:
        """Release connections held by this process."""


def names_one(coll: Collection, where: Where) -> bool:
    """Whether ``where`` can match one document at most: it sets the key or a unique field to a value."""
    return any(name == coll.key or name in coll.unique for name, cond in where.items()
               if cond is not None and not isinstance(cond, (Lt, Gt, In)))


def find_one(store: Store, coll: Collection, where: Where) -> Document | None:
    """The first document matching ``where``, or None."""
    return next(iter(store.find(coll, where, limit=1)), None)
