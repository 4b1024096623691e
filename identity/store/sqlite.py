"""Embedded store on SQLite (stdlib): WAL, connections per process and thread, opened lazily.

Every operation is a single statement in autocommit mode, so several gunicorn workers can share
the file: SQLite serialises the writes and a unique index settles every race. Connections are
opened after fork (the process id is part of the cache key), never at import time.

Two connections per thread: ``synchronous=FULL`` for durable writes only, ``NORMAL`` for non-durable
writes (``base`` module docstring: a group commit by the shared write-ahead log) and for every read.
SQLite drops a connection's page cache whenever another connection has written since its last read, so
reads share the connection of the hot paths' writes (a refresh token's rotation, say) and find their
pages still cached: measured on a refresh (in-process, 40,000 grants), 11 page reads fell to 2 and the
grant lookup took 12 µs less.

Writers queue on an ``flock`` of ``<file>-lock`` before they write. SQLite would serialise them
anyway, but a writer that finds the database locked sleeps in SQLite's busy handler (1, 2, 5, 10 ms…)
however short the other write is; a writer waiting on the flock looks again after 0.1, 0.2, 0.4 … 2 ms
(a blocking flock would wake at once but cannot time out), and gives up with ``StoreUnavailable`` after
``BUSY_TIMEOUT_SECONDS``, as SQLite's own busy timeout does. A delete over many rows goes in batches
(``Store.delete``), so no write holds the turn for long. The flock only orders writers that use this
class: anything else still meets SQLite's own locking.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..metrics import store_operation
from .base import BULK_BATCH, Collection, Document, DuplicateKeyError, Order, StoreUnavailable, Where, names_one
from .sqlite_statements import ENCODED_KINDS, SQL_TYPES, Statements, from_sql, quoted

BACKEND = "sqlite"  # the metrics' backend label
BUSY_TIMEOUT_SECONDS = 10.0  # the longest a write waits for its turn, then StoreUnavailable (a 503)
DELETE_BATCH = 2000  # rows a delete over many removes per write turn (Store.delete)


def path_from_uri(uri: str) -> Path:
    """``sqlite:///var/x.sqlite3`` → ``var/x.sqlite3``; ``sqlite:////abs/x`` → ``/abs/x``."""
    if not uri.startswith("sqlite:///"):
        raise ValueError("an SQLite URI starts with sqlite:///")
    return Path(uri[len("sqlite:///"):])


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY, whatever its extended code (another connection holds the lock it needs)."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def use_wal(conn: sqlite3.Connection, *, timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
    """Switch ``conn``'s database to WAL, waiting while other connections hold it.

    Switching needs an exclusive lock, and SQLite answers a switch that would wait on a connection which
    itself waits (several processes opening a fresh file at once) with SQLITE_BUSY at once, without the
    busy timeout: the switch is retried here until ``timeout``. A database already in WAL stays in it.
    """
    deadline, delay = time.monotonic() + timeout, 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class SQLiteStore:
    """``Store`` on one SQLite database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._ensured: set[str] = set()
        self._ensure_lock = threading.Lock()
        self._statements = Statements()
        self._writer_thread_lock = threading.Lock()
        self._writer_fd: tuple[int, int] | None = None  # (pid, fd) of this process's lock file
        self._json_each: bool | None = None  # whether this SQLite has json_each (bulk reads' key lists)

    # -- connections -------------------------------------------------------------------------

    def _connection(self, durable: bool) -> sqlite3.Connection:
        """This thread's connection for durable writes, or the one for reads and non-durable writes."""
        attr = "conn" if durable else "fast_conn"
        conn: sqlite3.Connection | None = getattr(self._local, attr, None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.conn = self._local.fast_conn = None  # inherited across fork: never reuse
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create_private()
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=True
            )
            use_wal(conn)
            # FULL: a first-login mapping that reached a token must survive a power cut.
            # NORMAL (non-durable writes, base.py): no fsync of its own at a commit; a process crash loses
            # nothing, and the next FULL commit (of any process: one log) syncs it with its own.
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the SQLite store: {type(exc).__name__}") from exc
        setattr(self._local, attr, conn)
        self._local.pid = os.getpid()
        return conn

    def _create_private(self) -> None:
        """Create the database file readable by its owner only, whatever the umask: it holds the vault (blind
        indexes, sealed e-mails), grants and the audit log. SQLite gives its -wal and -shm files the same mode.
        An existing file keeps its mode."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass

    def close(self) -> None:
        self._close_connections()
        with self._writer_thread_lock:
            if self._writer_fd is not None and self._writer_fd[0] == os.getpid():
                os.close(self._writer_fd[1])
            self._writer_fd = None

    def _close_connections(self) -> None:
        """This thread's connections; not the writers' lock file (a failing write still holds its turn)."""
        for attr in ("conn", "fast_conn"):
            conn = getattr(self._local, attr, None)
            if conn is not None and getattr(self._local, "pid", None) == os.getpid():
                conn.close()
            setattr(self._local, attr, None)

    def _writer_lock_fd(self) -> int | None:
        """This process's descriptor of ``<file>-lock`` (None if it cannot be opened: no queueing)."""
        if self._writer_fd is not None and self._writer_fd[0] == os.getpid():
            return self._writer_fd[1]
        try:
            fd = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        self._writer_fd = (os.getpid(), fd)  # one inherited across fork is never used (pid differs)
        return fd

    def _write(self, sql: str, params: Any, *, durable: bool, many: bool = False) -> sqlite3.Cursor:
        """Run a write in its turn: behind the other writers of this file (threads here, processes via flock),
        for at most ``BUSY_TIMEOUT_SECONDS``: then ``StoreUnavailable`` (a 503), never a request left hanging."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        if not self._writer_thread_lock.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            raise StoreUnavailable("the SQLite store is busy: no turn to write within the timeout")
        try:
            fd = self._writer_lock_fd()
            if fd is not None:
                fd = self._writers_turn(fd, deadline)
            try:
                return self._run(sql, params, durable=durable, many=many)
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._writer_thread_lock.release()

    @staticmethod
    def _writers_turn(fd: int, deadline: float) -> int | None:
        """The writers' flock on ``fd`` (None if it cannot be taken at all: no queueing), polled every 0.1 to
        2 ms: a blocking flock cannot time out. Raises ``StoreUnavailable`` once ``deadline`` has passed."""
        delay = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
            except OSError:
                return None
            if time.monotonic() >= deadline:
                raise StoreUnavailable("the SQLite store is busy: another writer held it for the whole timeout")
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def _run(self, sql: str, params: Any = (), *, durable: bool = False, many: bool = False) -> sqlite3.Cursor:
        """One statement (rows as tuples); ``durable``: on the connection whose commits are synced (writes
        only); ``many``: ``sql`` for each row of ``params`` in one transaction."""
        try:
            if many:
                return self._executemany(self._connection(durable), sql, params)
            return self._connection(durable).execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyError(str(exc)) from exc
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            self._close_connections()  # a broken connection is reopened on the next call
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc

    @staticmethod
    def _executemany(conn: sqlite3.Connection, sql: str, rows: Iterable[tuple[Any, ...]]) -> sqlite3.Cursor:
        """``sql`` for every row in one transaction: one commit (and one fsync if durable) per batch."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return cursor

    def _has_json_each(self) -> bool:
        """Whether this SQLite has the JSON functions (built in since 3.38, usually compiled in before)."""
        if self._json_each is None:
            try:
                self._connection(False).execute("SELECT value FROM json_each('[]')").fetchall()
                self._json_each = True
            except sqlite3.OperationalError:
                self._json_each = False
        return self._json_each

    # -- schema ------------------------------------------------------------------------------

    def _ensure(self, coll: Collection) -> None:
        if coll.name in self._ensured:
            return
        with self._ensure_lock:
            columns = ", ".join(
                f'"{name}" {SQL_TYPES[kind]}' + (" PRIMARY KEY" if name == coll.key else "")
                for name, kind in coll.fields.items()
            )
            self._write(f'CREATE TABLE IF NOT EXISTS "{coll.name}" ({columns})', (), durable=True)
            existing = self._columns(coll)
            for name, kind in coll.fields.items():
                if name not in existing:  # a field added by a later release
                    self._add_column(coll, name, kind)
            for name in coll.unique:
                self._write(f'CREATE UNIQUE INDEX IF NOT EXISTS "u_{coll.name}_{name}" ON "{coll.name}" ("{name}")',
                            (), durable=True)
            for index in coll.indexed:
                names = (index,) if isinstance(index, str) else index
                cols = quoted(names)
                self._write(f'CREATE INDEX IF NOT EXISTS "i_{coll.name}_{"_".join(names)}" ON "{coll.name}" ({cols})',
                            (), durable=True)
            self._ensured.add(coll.name)

    def _columns(self, coll: Collection) -> set[str]:
        return {row[1] for row in self._run(f'PRAGMA table_info("{coll.name}")')}  # (cid, name, …)

    def _add_column(self, coll: Collection, name: str, kind: type) -> None:
        """Add a field of a later release; another process starting at the same time may have added it first
        (they read the columns at once, then queue to write): then there is nothing to do."""
        try:
            self._write(f'ALTER TABLE "{coll.name}" ADD COLUMN "{name}" {SQL_TYPES[kind]}', (), durable=True)
        except StoreUnavailable:
            if name not in self._columns(coll):
                raise

    def prepare(self, coll: Collection) -> dict[str, list[str]]:
        """Create the collection's table, columns and indexes if missing (idempotent): its index names and
        those created now."""
        before = self._index_names(coll)
        self._ensured.discard(coll.name)
        self._ensure(coll)
        after = self._index_names(coll)
        return {"indexes": after, "created": sorted(set(after) - set(before))}

    def _index_names(self, coll: Collection) -> list[str]:
        rows = self._run("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (coll.name,))
        return sorted(name for (name,) in rows.fetchall() if not name.startswith("sqlite_autoindex"))

    # -- operations --------------------------------------------------------------------------

    @store_operation(BACKEND, "insert")
    def insert(self, coll: Collection, doc: Document, *, durable: bool | None = None) -> None:
        self._ensure(coll)
        sql, values = self._statements.insert(coll, doc)
        self._write(sql, values, durable=coll.durable if durable is None else durable)

    @store_operation(BACKEND, "insert_many")
    def insert_many(self, coll: Collection, docs: Iterable[Document], *, durable: bool | None = None) -> int:
        """``INSERT OR IGNORE``, one transaction a batch: a clash on any unique index skips that row."""
        self._ensure(coll)
        durable = coll.durable if durable is None else durable
        inserted, source = 0, iter(docs)
        while batch := list(islice(source, BULK_BATCH)):
            for doc in batch:
                coll.check_fields(doc)
            sql, rows = self._statements.insert_rows(coll, batch)
            inserted += self._write(sql, rows, durable=durable, many=True).rowcount
        return inserted

    @store_operation(BACKEND, "get")
    def get(self, coll: Collection, key: Any) -> Document | None:
        self._ensure(coll)
        sql, params = self._statements.select(coll, {coll.key: key})
        row = self._run(sql, params).fetchone()
        return None if row is None else self._statements.columns(coll).document(row)

    @store_operation(BACKEND, "find")
    def find(
        self, coll: Collection, where: Where, *, order: Order | None = None, limit: int | None = None
    ) -> Iterator[Document]:
        self._ensure(coll)
        sql, params = self._statements.select(coll, where, order=order, limit=limit)
        rows = self._run(sql, params).fetchall()  # short read transactions: never hold a cursor open
        document = self._statements.columns(coll).document
        return iter([document(row) for row in rows])

    def find_fields(self, coll: Collection, where: Where, fields: Sequence[str], *,
                    batch_size: int = BULK_BATCH) -> Iterator[list[tuple[Any, ...]]]:
        names = coll.bulk_read_fields(fields, batch_size)
        self._ensure(coll)
        clause, params = self._statements.where(coll, where, json_in=self._has_json_each())
        return self._batches(coll, names, clause, params, int(batch_size))

    def _batches(self, coll: Collection, names: tuple[str, ...], clause: str, params: tuple[Any, ...],
                 batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
        extra = coll.key not in names  # the key is read too, to page on it
        columns = quoted(names + ((coll.key,) if extra else ()))
        select, page = f'SELECT {columns} FROM "{coll.name}"', f' ORDER BY "{coll.key}" LIMIT {batch_size}'
        after = f'{clause} AND "{coll.key}" > ?' if clause else f' WHERE "{coll.key}" > ?'
        kinds = tuple(coll.fields[n] for n in names)
        plain = not any(kind in ENCODED_KINDS for kind in kinds)
        rows = self._fields_page(select + clause + page, params)
        while rows:
            last = rows[-1][-1 if extra else names.index(coll.key)]
            batch = [row[:-1] for row in rows] if extra else rows
            if not plain:
                batch = [tuple(from_sql(k, v) for k, v in zip(kinds, row, strict=True)) for row in batch]
            yield batch
            if len(rows) < batch_size:
                return
            rows = self._fields_page(select + after + page, params + (last,))

    @store_operation(BACKEND, "find_fields")
    def _fields_page(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._run(sql, params).fetchall()  # one short read transaction a page

    @store_operation(BACKEND, "count")
    def count(self, coll: Collection, where: Where) -> int:
        self._ensure(coll)
        sql, params = self._statements.count(coll, where)
        return int(self._run(sql, params).fetchone()[0])

    @store_operation(BACKEND, "update")
    def update(self, coll: Collection, where: Where, changes: Mapping[str, Any], *,
               durable: bool | None = None) -> int:
        self._ensure(coll)
        sql, params = self._statements.update(coll, where, changes)
        return self._write(sql, params, durable=coll.durable if durable is None else durable).rowcount

    @store_operation(BACKEND, "delete")
    def delete(self, coll: Collection, where: Where) -> int:
        self._ensure(coll)
        if names_one(coll, where):
            sql, params = self._statements.delete(coll, where)
            return self._write(sql, params, durable=coll.durable).rowcount
        sql, params = self._statements.delete_batch(coll, where, DELETE_BATCH)
        deleted = 0
        while True:  # a batch a write turn (Store.delete): other writers go in between
            batch = self._write(sql, params, durable=coll.durable).rowcount
            deleted += batch
            if batch < DELETE_BATCH:
                return deleted

    @store_operation(BACKEND, "ping")
    def ping(self) -> None:
        self._run("SELECT 1").fetchone()
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise StoreUnavailable("the SQLite store file is not readable and writable")
