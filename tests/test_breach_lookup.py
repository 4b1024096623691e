"""Batched reads of the breach run: one bulk read of the store per batch, the same on every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from identity.breach.lookup import Lookup, look_up
from identity.store import SQLiteStore, StoreUnavailable
from identity.vault import IDENTITIES, new_pseudonym
from tests.breach_support import populate


def test_a_batch_finds_the_sealed_the_erased_the_restricted_and_nobody_else(store, keys_dir: Path):
    people = populate(store, keys_dir)
    stranger = new_pseudonym()
    with Lookup(store) as reader:
        answers = reader(people.order + people.order[:2] + [stranger])  # a batch may name someone twice
        assert reader([]).sealed == {}
    assert answers == look_up(store, people.order + [stranger])
    assert answers.sealed == {p: store.get(IDENTITIES, p)["sealed_email"] for p in people.order if p != people.erased}
    assert answers.erased == {people.erased} and answers.restricted == {people.restricted}
    assert stranger not in answers.sealed and stranger not in answers.erased


def test_the_reader_on_an_empty_store_finds_nothing(store):
    with Lookup(store) as reader:
        assert reader([new_pseudonym()]) == look_up(store, []) == look_up(store, [new_pseudonym()])


class _Recording:
    """Any ``Store`` (here a wrapper around the fixture's): the lookup may use only the contract."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.bulk_reads: list[tuple[str, tuple[str, ...], int]] = []

    def find_fields(self, coll, where, fields, **options):
        self.bulk_reads.append((coll.name, tuple(fields), len(where[coll.key].values)))
        return self._store.find_fields(coll, where, fields, **options)


def test_one_bulk_read_of_the_needed_columns_per_batch_through_the_store_contract(store, keys_dir: Path):
    people = populate(store, keys_dir)
    recording = _Recording(store)
    with Lookup(recording) as reader:  # type: ignore[arg-type]
        assert len(reader(people.order[:5]).sealed) == 4  # order[3] is erased
        assert len(reader(people.order[5:]).sealed) == len(people.order) - 5
    assert recording.bulk_reads == [("identities", ("pseudonym", "sealed_email", "status"), 5),
                                    ("identities", ("pseudonym", "sealed_email", "status"), len(people.order) - 5)]


def test_a_failing_read_is_a_store_error_and_the_next_batch_reads_again(tmp_path: Path, keys_dir: Path):
    path = tmp_path / "vault.sqlite3"
    store = SQLiteStore(path)
    people = populate(store, keys_dir)
    store.close()
    path.rename(tmp_path / "moved.sqlite3")
    path.mkdir()  # a directory where the store's file should be
    with Lookup(store) as reader:
        with pytest.raises(StoreUnavailable):
            reader(people.order[:2])
        path.rmdir()
        (tmp_path / "moved.sqlite3").rename(path)
        assert len(reader(people.order[:2]).sealed) == 2
    store.close()
