"""The SQLite store's statement cache: built per shape, never per value, bounded, and as strict as uncached."""

from __future__ import annotations

import pytest

from identity.store import sqlite_statements
from identity.store.base import Collection, Gt, In, Lt, Order
from identity.store.sqlite_statements import Columns, Statements

THINGS = Collection(name="things", key="id",
                    fields={"id": str, "n": int, "ok": bool, "tags": list, "meta": dict, "note": str})


def test_one_statement_text_per_shape_whatever_the_values():
    statements = Statements()
    first = statements.select(THINGS, {"id": "a", "n": Lt(3)}, limit=1)
    second = statements.select(THINGS, {"id": "b", "n": Lt(9)}, limit=1)
    assert first[0] == second[0]
    assert first[1] == ("a", 3) and second[1] == ("b", 9)
    assert len(statements._text) == 1
    assert first[0] == ('SELECT "id", "n", "ok", "tags", "meta", "note" FROM "things" '
                        'WHERE "id" = ? AND "n" < ? LIMIT 1')


def test_the_shape_tells_conditions_apart():
    statements = Statements()
    texts = {statements.count(THINGS, where)[0] for where in (
        {"n": 1}, {"n": None}, {"n": Lt(1)}, {"n": Gt(1)}, {"n": In((1, 2))}, {"n": In((1, 2, 3))}, {"n": In(())})}
    assert len(texts) == 7
    assert statements.count(THINGS, {"n": In(())})[0].endswith("WHERE 0")
    assert statements.count(THINGS, {"n": None}) == ('SELECT COUNT(*) FROM "things" WHERE "n" IS NULL', ())


def test_values_are_stored_as_sqlite_keeps_them():
    statements = Statements()
    sql, params = statements.update(THINGS, {"ok": True, "tags": In((["a"],))}, {"meta": {"b": 1, "a": 2}})
    assert sql == 'UPDATE "things" SET "meta" = ? WHERE "ok" = ? AND "tags" IN (?)'
    assert params == ('{"a":2,"b":1}', 1, '["a"]')


def test_json_in_passes_any_number_of_values_as_one_parameter():
    clause, params = Statements().where(THINGS, {"n": In(tuple(range(5000)))}, json_in=True)
    assert clause == ' WHERE "n" IN (SELECT value FROM json_each(?))'
    assert len(params) == 1


@pytest.mark.parametrize("call", [
    lambda s: s.select(THINGS, {"nope": 1}),
    lambda s: s.update(THINGS, {"id": "a"}, {"nope": 1}),
    lambda s: s.insert(THINGS, {"id": "a", "nope": 1}),
    lambda s: s.select(THINGS, {}, order=Order("nope")),
])
def test_unknown_fields_are_refused_on_first_and_later_calls(call):
    statements = Statements()
    for _ in range(2):
        with pytest.raises(ValueError, match="unknown field"):
            call(statements)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sqlite_statements, "MAX_CACHED_STATEMENTS", 4)
    statements = Statements()
    for limit in range(1, 50):
        assert statements.select(THINGS, {}, limit=limit)[0].endswith(f"LIMIT {limit}")
        assert len(statements._text) <= 4


def test_rows_become_documents_with_their_types():
    columns = Columns(THINGS)
    row = ("a", 3, 1, '["x"]', '{"k":1}', None)
    assert columns.document(row) == {"id": "a", "n": 3, "ok": True, "tags": ["x"], "meta": {"k": 1}, "note": None}
    assert columns.document(("b", None, None, None, None, "n")) == {
        "id": "b", "n": None, "ok": None, "tags": None, "meta": None, "note": "n"}
