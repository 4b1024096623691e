"""The store contract, run over SQLite and mongomock alike."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from identity.store import Collection, DuplicateKeyError, Gt, In, Lt, Order, SQLiteStore, StoreUnavailable, find_one

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
    assert find_one(store, THINGS, {"n": 4})["id"] == "k4"
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


def test_sqlite_uses_wal_and_full_sync(tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.insert(THINGS, {"id": "a"})
    conn = sqlite3.connect(tmp_path / "s.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
    assert store.get(THINGS, "a")["id"] == "a"


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
    assert [store.get(THINGS, "a")["n"], store.get(LOG_RECORDS, "b")["n"], store.get(LOG_RECORDS, "c")["n"]] == [2, 3, 1]


def test_sqlite_fsyncs_durable_writes_and_commits_the_others_without(tmp_path: Path):
    """A durable write goes through the ``synchronous=FULL`` connection, any other through ``NORMAL``:
    the call's choice first, else the collection's."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    used: list[bool] = []
    write = store._write

    def spy(sql, params, *, durable):
        used.append(durable)
        return write(sql, params, durable=durable)

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
