"""The store contract, run over SQLite and mongomock alike."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from identity.store import Collection, DuplicateKeyError, Gt, In, Lt, Order, SQLiteStore, StoreUnavailable, find_one
from identity.store import sqlite as sqlite_module
from identity.store.sqlite import use_wal
from tests.lookup_support import present
from tests.process_support import race_in_processes

THINGS = Collection(
    name="things",
    key="id",
    fields={"id": str, "email_index": str, "n": int, "score": float, "ok": bool, "tags": list, "meta": dict},
    unique=("email_index",),
    indexed=("n", ("ok", "n")),
)


def test_insert_and_get_round_trip_every_type(store):
    doc = {"id": "a", "email_index": "x", "n": 3, "score": 1.5, "ok": True, "tags": ["p", "q"], "meta": {"k": 1}}
    store.insert(THINGS, doc)
    assert store.get(THINGS, "a") == doc
    assert store.get(THINGS, "missing") is None


def test_missing_fields_read_back_as_none(store):
    store.insert(THINGS, {"id": "a", "n": 1})
    assert store.get(THINGS, "a") == {"id": "a", "email_index": None, "n": 1, "score": None, "ok": None,
                                      "tags": None, "meta": None}


def test_primary_key_is_unique(store):
    store.insert(THINGS, {"id": "a"})
    with pytest.raises(DuplicateKeyError):
        store.insert(THINGS, {"id": "a"})


def test_unique_field_refuses_duplicates_but_allows_many_absent(store):
    store.insert(THINGS, {"id": "a", "email_index": "same"})
    with pytest.raises(DuplicateKeyError):
        store.insert(THINGS, {"id": "b", "email_index": "same"})
    store.insert(THINGS, {"id": "c"})
    store.insert(THINGS, {"id": "d", "email_index": None})
    assert store.count(THINGS, {}) == 3


def test_unique_field_is_enforced_on_update(store):
    store.insert(THINGS, {"id": "a", "email_index": "one"})
    store.insert(THINGS, {"id": "b", "email_index": "two"})
    with pytest.raises(DuplicateKeyError):
        store.update(THINGS, {"id": "b"}, {"email_index": "one"})


def test_find_filters_orders_and_limits(store):
    for i in range(5):
        store.insert(THINGS, {"id": f"k{i}", "n": i, "ok": i % 2 == 0})
    assert [d["id"] for d in store.find(THINGS, {"n": Lt(2)}, order=Order("n"))] == ["k0", "k1"]
    assert [d["id"] for d in store.find(THINGS, {"n": Gt(2)}, order=Order("n"))] == ["k3", "k4"]
    assert [d["id"] for d in store.find(THINGS, {"ok": True}, order=Order("n", descending=True))] == ["k4", "k2", "k0"]
    assert [d["id"] for d in store.find(THINGS, {"id": In(("k1", "k3"))}, order=Order("id"))] == ["k1", "k3"]
    assert list(store.find(THINGS, {"id": In(())})) == []
    assert len(list(store.find(THINGS, {}, limit=2))) == 2
    assert present(find_one(store, THINGS, {"n": 4}))["id"] == "k4"
    assert store.count(THINGS, {"ok": False}) == 2


def test_none_in_a_filter_matches_absent_fields(store):
    store.insert(THINGS, {"id": "a", "email_index": "x"})
    store.insert(THINGS, {"id": "b"})
    assert [d["id"] for d in store.find(THINGS, {"email_index": None})] == ["b"]


def test_conditional_update_is_a_compare_and_set(store):
    store.insert(THINGS, {"id": "a", "n": 0})
    assert store.update(THINGS, {"id": "a", "n": 0}, {"n": 1}) == 1
    assert store.update(THINGS, {"id": "a", "n": 0}, {"n": 2}) == 0
    assert store.get(THINGS, "a")["n"] == 1


def test_update_to_none_removes_the_field(store):
    store.insert(THINGS, {"id": "a", "email_index": "x"})
    store.update(THINGS, {"id": "a"}, {"email_index": None})
    assert store.get(THINGS, "a")["email_index"] is None
    store.insert(THINGS, {"id": "b", "email_index": "x"})  # the unique value is free again


def test_delete_reports_count(store):
    for i in range(3):
        store.insert(THINGS, {"id": f"k{i}", "n": i})
    assert store.delete(THINGS, {"n": Lt(2)}) == 2
    assert store.delete(THINGS, {"n": Lt(2)}) == 0
    assert [d["id"] for d in store.find(THINGS, {})] == ["k2"]


def test_unknown_fields_are_refused(store):
    with pytest.raises(ValueError):
        store.insert(THINGS, {"id": "a", "nope": 1})
    with pytest.raises(ValueError):
        list(store.find(THINGS, {"nope": 1}))


def test_compare_and_set_under_threads_lets_exactly_one_win(sqlite_store):
    """SQLite only: mongomock is not thread-safe the way a real server is (DEPENDENCY-NOTES §4)."""
    store = sqlite_store
    store.insert(THINGS, {"id": "token", "n": 0})
    wins = []
    barrier = threading.Barrier(10)

    def use() -> None:
        barrier.wait()
        if store.update(THINGS, {"id": "token", "n": 0}, {"n": 1}) == 1:
            wins.append(1)

    threads = [threading.Thread(target=use) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_ping_succeeds_on_a_working_store(store):
    store.ping()


def test_sqlite_adds_columns_for_fields_added_later(tmp_path: Path):
    old = Collection(name="evolving", key="id", fields={"id": str})
    new = Collection(name="evolving", key="id", fields={"id": str, "added": int})
    first = SQLiteStore(tmp_path / "s.sqlite3")
    first.insert(old, {"id": "a"})
    first.close()
    second = SQLiteStore(tmp_path / "s.sqlite3")
    second.insert(new, {"id": "b", "added": 2})
    assert second.get(new, "a") == {"id": "a", "added": None}


def test_sqlite_instances_starting_at_once_both_add_a_new_field_without_error(tmp_path: Path, monkeypatch):
    """Both read the old columns, then queue to write: the second finds the column added by the first."""
    old = Collection(name="evolving", key="id", fields={"id": str})
    new = Collection(name="evolving", key="id", fields={"id": str, "added": int})
    SQLiteStore(tmp_path / "s.sqlite3").insert(old, {"id": "a"})
    first, second = SQLiteStore(tmp_path / "s.sqlite3"), SQLiteStore(tmp_path / "s.sqlite3")
    real_columns, reads = second._columns, []

    def read_before_the_first_wrote(coll):  # the first read of the columns happened before the other's ALTER
        reads.append(coll.name)
        return real_columns(coll) - ({"added"} if len(reads) == 1 else set())
    monkeypatch.setattr(second, "_columns", read_before_the_first_wrote)
    first.prepare(new)
    second.insert(new, {"id": "b", "added": 2})  # its ALTER meets "duplicate column name": nothing to do
    assert first.get(new, "b") == {"id": "b", "added": 2} and len(reads) == 2


def test_sqlite_a_failing_new_column_is_still_store_unavailable(tmp_path: Path, monkeypatch):
    new = Collection(name="evolving", key="id", fields={"id": str, "added": int})
    SQLiteStore(tmp_path / "s.sqlite3").insert(Collection(name="evolving", key="id", fields={"id": str}), {"id": "a"})
    store = SQLiteStore(tmp_path / "s.sqlite3")
    real_write = store._write

    def refuse_alter(sql, params, **kwargs):
        if sql.startswith("ALTER"):
            raise StoreUnavailable("the SQLite store failed: disk I/O error")
        return real_write(sql, params, **kwargs)
    monkeypatch.setattr(store, "_write", refuse_alter)
    with pytest.raises(StoreUnavailable):
        store.insert(new, {"id": "b", "added": 1})


def test_sqlite_uses_wal_and_full_sync(tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.insert(THINGS, {"id": "a"})
    conn = sqlite3.connect(tmp_path / "s.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class _LockedAtFirst:
    """A connection whose first ``busy`` WAL switches meet another process's lock (SQLITE_BUSY at once)."""

    def __init__(self, busy: int, code: int = sqlite3.SQLITE_BUSY) -> None:
        self.busy, self.code, self.calls = busy, code, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.busy:
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = self.code
            raise error


def test_sqlite_wal_switch_waits_out_a_lock_held_elsewhere():
    conn = _LockedAtFirst(busy=3)
    use_wal(conn, timeout=5)  # type: ignore[arg-type]
    assert conn.calls == 4


def test_sqlite_wal_switch_gives_up_at_the_timeout_and_on_other_errors():
    with pytest.raises(sqlite3.OperationalError):
        use_wal(_LockedAtFirst(busy=10_000), timeout=0.05)  # type: ignore[arg-type]
    readonly = _LockedAtFirst(busy=1, code=8)  # SQLITE_READONLY: waiting would not help
    with pytest.raises(sqlite3.OperationalError):
        use_wal(readonly, timeout=5)  # type: ignore[arg-type]
    assert readonly.calls == 1


def _open_and_insert(path: Path, i: int) -> str:
    SQLiteStore(path).insert(THINGS, {"id": str(i)})
    return "inserted"


def test_sqlite_processes_opening_one_fresh_file_at_once_all_open_it(tmp_path: Path):
    """Several workers starting on a new database: each switches it to WAL or finds it switched."""
    for trial in range(6):  # before the retry, about one process in twenty failed to open the file
        path = tmp_path / f"fresh-{trial}.sqlite3"
        assert race_in_processes(_open_and_insert, [(path, i) for i in range(8)]) == ["inserted"] * 8
        assert sorted(d["id"] for d in SQLiteStore(path).find(THINGS, {})) == [str(i) for i in range(8)]


def test_sqlite_unreachable_file_raises_store_unavailable(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    store = SQLiteStore(blocker / "s.sqlite3")
    with pytest.raises(StoreUnavailable):
        store.get(THINGS, "a")


def test_sqlite_recovers_when_the_file_comes_back(tmp_path: Path):
    path = tmp_path / "dir" / "s.sqlite3"
    store = SQLiteStore(path)
    store.insert(THINGS, {"id": "a"})
    store.close()
    (tmp_path / "dir").rename(tmp_path / "moved")
    (tmp_path / "dir").write_text("blocked")
    with pytest.raises(StoreUnavailable):
        store.ping()
    (tmp_path / "dir").unlink()
    (tmp_path / "moved").rename(tmp_path / "dir")
    store.ping()
    assert present(store.get(THINGS, "a"))["id"] == "a"


# -- durability: each write's, or its collection's (base module docstring) --------------------------

LOG_RECORDS = Collection(name="log_records", key="id", fields={"id": str, "n": int}, durable=False)


def test_a_write_chooses_its_durability_and_reads_back_the_same(store):
    store.insert(THINGS, {"id": "a", "n": 1}, durable=False)
    store.insert(LOG_RECORDS, {"id": "b", "n": 1}, durable=True)
    store.insert(LOG_RECORDS, {"id": "c", "n": 1})
    assert store.update(THINGS, {"id": "a", "n": 1}, {"n": 2}, durable=False) == 1
    assert store.update(LOG_RECORDS, {"id": "b", "n": 1}, {"n": 3}, durable=True) == 1
    assert store.update(LOG_RECORDS, {"id": "b", "n": 1}, {"n": 4}, durable=False) == 0  # still conditional
    with pytest.raises(DuplicateKeyError):
        store.insert(THINGS, {"id": "a"}, durable=False)
    assert [present(store.get(THINGS, "a"))["n"], present(store.get(LOG_RECORDS, "b"))["n"],
            present(store.get(LOG_RECORDS, "c"))["n"]] == [2, 3, 1]


def test_sqlite_fsyncs_durable_writes_and_commits_the_others_without(tmp_path: Path):
    """A durable write goes through the ``synchronous=FULL`` connection, any other through ``NORMAL``:
    the call's choice first, else the collection's."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    used: list[bool] = []
    write = store._write

    def spy(sql, params, *, durable, many=False):
        used.append(durable)
        return write(sql, params, durable=durable, many=many)

    store.prepare(THINGS)
    store.prepare(LOG_RECORDS)
    store._write = spy  # type: ignore[method-assign]
    store.insert(THINGS, {"id": "a"})
    store.insert(THINGS, {"id": "b"}, durable=False)
    store.insert(LOG_RECORDS, {"id": "c"})
    store.insert(LOG_RECORDS, {"id": "d"}, durable=True)
    store.update(THINGS, {"id": "a"}, {"n": 1}, durable=False)
    store.update(LOG_RECORDS, {"id": "c"}, {"n": 1})
    store.update(LOG_RECORDS, {"id": "c"}, {"n": 2}, durable=True)
    assert used == [True, False, False, True, False, False, True]
    assert store._connection(True).execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._connection(False).execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    # one write-ahead log for both: a non-durable commit is visible at once, and synced by the next durable one
    other = sqlite3.connect(tmp_path / "s.sqlite3")
    assert other.execute("SELECT n FROM log_records WHERE id = 'c'").fetchone()[0] == 2
    store.close()


def test_sqlite_reads_share_the_non_durable_writes_connection(tmp_path: Path):
    """SQLite drops a connection's page cache when another connection wrote: reads go through the
    connection of the hot paths' (non-durable) writes, never the durable one."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.insert(LOG_RECORDS, {"id": "a"})
    durable, other = store._connection(True), store._connection(False)
    store._local.conn = None  # a read that needed the durable connection would open a new one
    store.update(LOG_RECORDS, {"id": "a"}, {"n": 1})
    assert present(store.get(LOG_RECORDS, "a"))["n"] == 1
    assert [doc["id"] for doc in store.find(LOG_RECORDS, {"n": 1})] == ["a"]
    assert store.count(LOG_RECORDS, {}) == 1
    assert store._local.conn is None and store._connection(False) is other
    durable.close()
    store.close()


def test_sqlite_creates_tables_and_indexes_in_the_writers_turn(tmp_path: Path):
    """A lazily created table or index is a durable write queued behind the other writers (the flock)."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    seen: list[tuple[str, bool]] = []
    write = store._write

    def spy(sql, params, *, durable, many=False):
        seen.append((sql.split(" (")[0], durable))
        return write(sql, params, durable=durable, many=many)

    store._write = spy  # type: ignore[method-assign]
    store.insert(THINGS, {"id": "a"})
    ddl = [(sql, durable) for sql, durable in seen if sql.startswith("CREATE")]
    assert ddl and all(durable for _, durable in ddl)
    assert ddl[0][0] == 'CREATE TABLE IF NOT EXISTS "things"'
    store.close()


def test_sqlite_a_writer_waits_its_turn_then_gets_on_and_gives_up_after_the_timeout(tmp_path: Path, monkeypatch):
    """Another process's writer (the flock on ``<file>-lock``) held briefly: the write follows it; held past
    the busy timeout: ``StoreUnavailable`` (a 503), not a request left hanging."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.insert(THINGS, {"id": "a"})
    other_writer = os.open(f"{tmp_path / 's.sqlite3'}-lock", os.O_RDWR)  # its own open file: its own flock
    fcntl.flock(other_writer, fcntl.LOCK_EX)
    threading.Timer(0.2, fcntl.flock, (other_writer, fcntl.LOCK_UN)).start()
    started = time.monotonic()
    store.insert(THINGS, {"id": "b"})
    assert 0.15 < time.monotonic() - started < 2 and store.get(THINGS, "b") is not None

    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_SECONDS", 0.3)
    fcntl.flock(other_writer, fcntl.LOCK_EX)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="busy"):
        store.insert(THINGS, {"id": "c"})
    assert 0.25 < time.monotonic() - started < 2
    fcntl.flock(other_writer, fcntl.LOCK_UN)
    store.insert(THINGS, {"id": "c"})  # the turn is free again
    os.close(other_writer)
    store.close()


def test_sqlite_a_delete_over_many_rows_goes_in_batches_and_deletes_them_all(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "DELETE_BATCH", 7)
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.insert_many(THINGS, [{"id": f"{i:03d}", "n": i} for i in range(50)])
    turns: list[str] = []
    write = store._write

    def spy(sql, params, *, durable, many=False):
        turns.append(sql.split(" ")[0])
        return write(sql, params, durable=durable, many=many)

    store._write = spy  # type: ignore[method-assign]
    assert store.delete(THINGS, {"n": Lt(30)}) == 30
    assert turns == ["DELETE"] * 5  # 7 + 7 + 7 + 7 + 2
    assert store.count(THINGS, {}) == 20 and store.count(THINGS, {"n": Lt(30)}) == 0
    turns.clear()
    assert store.delete(THINGS, {"id": "040"}) == 1 and turns == ["DELETE"]  # one row: one plain statement
    store.close()


# -- bulk: insert_many and find_fields (the breach run's and the benchmarks' million rows) -----------

@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    """Bulk inserts a few documents a batch, so a test crosses batch boundaries with a handful."""
    from identity.store import mongo, sqlite

    monkeypatch.setattr(sqlite, "BULK_BATCH", 3)
    monkeypatch.setattr(mongo, "BULK_BATCH", 3)
    return 3


def test_insert_many_inserts_every_document_across_batches(store, small_batches):
    docs = [{"id": f"k{i}", "n": i, "ok": i % 2 == 0, "tags": [i], "meta": {"i": i}} for i in range(8)]
    assert store.insert_many(THINGS, iter(docs)) == 8  # any iterable, read a batch at a time
    assert [store.get(THINGS, f"k{i}") for i in range(8)] == [doc | {"email_index": None, "score": None}
                                                              for doc in docs]
    assert store.insert_many(THINGS, []) == 0


def test_insert_many_skips_what_clashes_on_a_unique_index_and_inserts_the_rest(store, small_batches):
    store.insert(THINGS, {"id": "a", "email_index": "taken", "n": 1})
    given = [{"id": "a", "n": 2}, {"id": "b", "email_index": "taken"}, {"id": "c"}, {"id": "c", "n": 3},
             {"id": "d", "email_index": "new"}, {"id": "e", "email_index": "new"}, {"id": "f"}]
    assert store.insert_many(THINGS, given) == 3  # c, d, f: unordered, as MongoDB's ordered=False
    assert [d["id"] for d in store.find(THINGS, {}, order=Order("id"))] == ["a", "c", "d", "f"]
    assert store.get(THINGS, "a")["n"] == 1 and store.get(THINGS, "c")["n"] is None  # the first one stays


def test_insert_many_refuses_unknown_fields_before_writing_their_batch(store):
    with pytest.raises(ValueError):
        store.insert_many(THINGS, [{"id": "a"}, {"id": "b", "nope": 1}])
    assert store.count(THINGS, {}) == 0


def test_insert_many_chooses_its_durability(store):
    assert store.insert_many(LOG_RECORDS, [{"id": "a", "n": 1}]) == 1
    assert store.insert_many(THINGS, [{"id": "b"}], durable=False) == 1
    assert store.get(LOG_RECORDS, "a")["n"] == 1 and store.get(THINGS, "b")["id"] == "b"


def test_find_fields_reads_only_the_fields_asked_in_key_order_and_in_batches(store):
    for i in (4, 0, 6, 2, 5, 1, 3):
        store.insert(THINGS, {"id": f"k{i}", "n": i, "ok": i % 2 == 0, "tags": [i], "meta": {"i": i}} if i
                     else {"id": "k0"})
    batches = list(store.find_fields(THINGS, {}, ("n", "id", "ok", "tags", "meta", "score"), batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    rows = [row for batch in batches for row in batch]
    assert rows[0] == (None, "k0", None, None, None, None)  # absent fields read as None
    assert rows[1:] == [(i, f"k{i}", i % 2 == 0, [i], {"i": i}, None) for i in range(1, 7)]
    assert all(type(row[2]) is bool for row in rows[1:])


def test_find_fields_pages_on_the_key_even_when_it_is_not_asked_for(store):
    store.insert_many(THINGS, [{"id": f"k{i}", "n": i} for i in range(6)])
    assert list(store.find_fields(THINGS, {}, ("n",), batch_size=2)) == [[(0,), (1,)], [(2,), (3,)], [(4,), (5,)]]
    assert list(store.find_fields(THINGS, {}, ("n",), batch_size=6)) == [[(i,) for i in range(6)]]


def test_find_fields_filters_as_find_does(store):
    store.insert_many(THINGS, [{"id": f"k{i}", "n": i, "ok": i % 2 == 0} for i in range(9)]
                      + [{"id": "none"}])
    def ids(where, size=2):
        return [row[0] for batch in store.find_fields(THINGS, where, ("id",), batch_size=size) for row in batch]
    assert ids({"id": In(("k7", "k1", "k3", "missing", "k5", "k1"))}) == ["k1", "k3", "k5", "k7"]
    assert ids({"n": Lt(4), "ok": True}) == ["k0", "k2"]
    assert ids({"n": Gt(5)}, 1) == ["k6", "k7", "k8"]
    assert ids({"n": None}) == ["none"]
    assert ids({"id": In(())}) == []
    assert list(store.find_fields(THINGS, {"n": Gt(100)}, ("id",))) == []


def test_find_fields_takes_a_key_list_longer_than_sqlites_parameter_limit(store):
    store.insert_many(THINGS, [{"id": f"k{i}", "n": i} for i in range(3)])
    asked = tuple(f"k{i}" for i in range(40_000))  # SQLite allows 32,766 parameters a statement (999 before 3.32)
    rows = [row for batch in store.find_fields(THINGS, {"id": In(asked)}, ("id", "n")) for row in batch]
    assert rows == [("k0", 0), ("k1", 1), ("k2", 2)]


def test_find_fields_refuses_unknown_fields_and_batch_sizes_when_called(store):
    with pytest.raises(ValueError):
        store.find_fields(THINGS, {}, ("id", "nope"))
    with pytest.raises(ValueError):
        store.find_fields(THINGS, {"nope": 1}, ("id",))
    with pytest.raises(ValueError):
        store.find_fields(THINGS, {}, ("id",), batch_size=0)


def test_find_fields_sees_what_is_written_after_its_last_batch(store):
    store.insert_many(THINGS, [{"id": "k1"}, {"id": "k2"}])
    batches = store.find_fields(THINGS, {}, ("id",), batch_size=2)
    assert next(batches) == [("k1",), ("k2",)]
    store.insert(THINGS, {"id": "k3"})  # each batch is a read of its own: no snapshot held between them
    assert list(batches) == [[("k3",)]]


def test_sqlite_bulk_insert_is_one_transaction_a_batch_on_the_connection_of_its_durability(tmp_path: Path,
                                                                                            small_batches):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    used: list[tuple[bool, int]] = []
    write = store._write

    def spy(sql, params, *, durable, many=False):
        used.append((durable, len(params) if many else 0))
        return write(sql, params, durable=durable, many=many)

    store.prepare(THINGS)
    store.prepare(LOG_RECORDS)
    store._write = spy  # type: ignore[method-assign]
    assert store.insert_many(THINGS, [{"id": f"k{i}"} for i in range(7)]) == 7
    assert store.insert_many(LOG_RECORDS, [{"id": "a"}]) == 1
    assert store.insert_many(LOG_RECORDS, [{"id": "b"}], durable=True) == 1
    assert used == [(True, 3), (True, 3), (True, 1), (False, 1), (True, 1)]
    assert not store._connection(True).in_transaction
    store.close()


def test_sqlite_bulk_read_on_a_broken_file_is_store_unavailable(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    store.insert_many(THINGS, [{"id": "a"}])
    store.close()
    path.write_bytes(b"not a database" * 100)
    for name in ("s.sqlite3-wal", "s.sqlite3-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(StoreUnavailable):
        list(store.find_fields(THINGS, {}, ("id",)))
    with pytest.raises(StoreUnavailable):
        store.insert_many(THINGS, [{"id": "b"}])


def test_a_new_sqlite_store_and_its_log_are_readable_by_their_owner_only(tmp_path):
    """The file holds the vault, grants and the audit log: under the usual umask (022) SQLite would create it, and
    its -wal and -shm files, readable by every local user."""
    previous = os.umask(0o022)
    try:
        store = SQLiteStore(tmp_path / "s.sqlite3")
        store.insert(Collection(name="things", key="id", fields={"id": str}), {"id": "a"})
    finally:
        os.umask(previous)
    for name in ("s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    store.close()
