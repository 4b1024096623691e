"""Batched reads of the breach run: the run's own SQLite reader answers as the store does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from identity.breach.lookup import Lookup, look_up
from identity.store import SQLiteStore, StoreUnavailable
from identity.vault import IDENTITIES, new_pseudonym
from tests.breach_support import populate


def test_the_runs_reader_answers_as_the_store_does(store, keys_dir: Path):
    people = populate(store, keys_dir)
    asked = people.order + [new_pseudonym()]
    with Lookup(store) as reader:
        fast = reader(asked)
        assert reader([]).sealed == {}
    slow = look_up(store, asked)
    assert fast == slow
    assert set(fast.sealed) == set(people.pseudonyms)
    assert fast.erased == {people.erased} and fast.restricted == {people.restricted}


def test_the_reader_on_an_empty_store_finds_nothing(tmp_path: Path):
    store = SQLiteStore(tmp_path / "empty.sqlite3")
    with Lookup(store) as reader:
        assert reader([new_pseudonym()]).sealed == {}
    store.close()


def test_the_reader_cannot_write(sqlite_store, keys_dir: Path):
    people = populate(sqlite_store, keys_dir)
    with Lookup(sqlite_store) as reader:
        reader(people.order[:1])
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._identities._conn.execute(f'DELETE FROM "{IDENTITIES.name}"')  # type: ignore[union-attr]
    assert len(look_up(sqlite_store, people.order).sealed) == len(people.pseudonyms)


def test_a_failing_read_is_a_store_error_and_the_reader_reconnects(sqlite_store, keys_dir: Path):
    people = populate(sqlite_store, keys_dir)
    with Lookup(sqlite_store) as reader:
        reader(people.order[:1])
        identities = reader._identities
        good, identities._join = identities._join, 'SELECT * FROM "no_such_table" WHERE ?'  # a failing read
        with pytest.raises(StoreUnavailable, match="no_such_table"):
            reader(people.order[:2])
        assert identities._conn is None
        identities._join = good
        assert len(reader(people.order[:2]).sealed) == 2


def test_without_json_each_the_reader_asks_with_in(sqlite_store, keys_dir: Path):
    people = populate(sqlite_store, keys_dir)
    asked = people.order + people.order[:2] + [new_pseudonym()]  # a batch may name someone twice
    with Lookup(sqlite_store) as reader:
        joined = reader(asked)
        assert reader._identities._json is True
        reader._identities._json = False
        assert reader(asked) == joined == look_up(sqlite_store, asked)
        assert reader._identities._sql  # the IN form was used
