"""SQL text and value conversion for the SQLite store, built once per statement shape.

A token request makes three or four store calls, each a primary-key or unique-index lookup or a
conditional update that SQLite itself answers in 6-10 µs. Building the statement's text, checking its
field names and decoding every column through a per-value type switch cost about as much again (a grant
found by its refresh family: 16.4 µs, of which SQLite's 6.1; now 13.5 µs; a conditional update 22.6 µs,
now 19; in a tight loop, where caches flatter both). Here a
statement's text is built and its field names are checked once per *shape* (the collection, the fields
named, each condition's kind, the order and limit) and rows are read as plain tuples, decoded only
where a column is stored as JSON or as a 0/1 integer. Shapes come from the code's call sites, never
from values, so the cache stays small; it is bounded anyway.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Sequence

from .base import Collection, Document, Gt, In, Lt, Order, Where

MAX_CACHED_STATEMENTS = 1024  # far more shapes than the code has; a caller varying limits cannot grow it
SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER", list: "TEXT", dict: "TEXT"}
ENCODED_KINDS = (list, dict, bool)  # kinds whose values SQLite does not store as they are


def to_sql(kind: type, value: Any) -> Any:
    """``value`` of a field of type ``kind`` as SQLite stores it (JSON text for lists and dicts, 0/1)."""
    if value is None:
        return None
    if kind is list or kind is dict:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if kind is bool:
        return 1 if value else 0
    return value


def from_sql(kind: type, value: Any) -> Any:
    """The inverse of ``to_sql``."""
    if value is None:
        return None
    if kind is list or kind is dict:
        return json.loads(value)
    if kind is bool:
        return bool(value)
    return value


def quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


class Columns:
    """How a collection's rows are read: every field in declaration order, decoded where it must be."""

    __slots__ = ("names", "select", "_decoders")

    def __init__(self, coll: Collection) -> None:
        self.names = tuple(coll.fields)
        self.select = f'SELECT {quoted(self.names)} FROM "{coll.name}"'
        self._decoders = tuple((name, kind) for name, kind in coll.fields.items() if kind in ENCODED_KINDS)

    def document(self, row: Sequence[Any]) -> Document:
        """A row read with ``select`` as a document."""
        doc = dict(zip(self.names, row, strict=True))
        for name, kind in self._decoders:
            value = doc[name]
            if value is not None:
                doc[name] = from_sql(kind, value)
        return doc


# A condition's part of a statement's shape: the field name alone for equality, else (name, kind[, n]).
_Shape = tuple[Any, ...]


class Statements:
    """The statements of one store, cached by shape (module docstring). Safe to share between threads:
    a statement built twice by a race is the same text."""

    def __init__(self) -> None:
        self._text: dict[_Shape, str] = {}
        self._columns: dict[str, Columns] = {}

    def columns(self, coll: Collection) -> Columns:
        columns = self._columns.get(coll.name)
        if columns is None:
            columns = self._columns[coll.name] = Columns(coll)
        return columns

    def insert(self, coll: Collection, doc: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """``INSERT`` of ``doc``'s fields."""
        names = tuple(doc)
        sql = self._cached(("insert", coll.name, names), self._insert_text, coll, names, "INSERT")
        fields = coll.fields
        return sql, tuple(to_sql(fields[n], doc[n]) for n in names)

    def insert_rows(self, coll: Collection, docs: Sequence[Mapping[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
        """``INSERT OR IGNORE`` of every field, and a row of values for each of ``docs`` (checked by the
        caller; absent fields are NULL)."""
        sql = self._cached(("insert", coll.name, None), self._insert_text, coll, tuple(coll.fields),
                           "INSERT OR IGNORE")
        columns = tuple(coll.fields.items())
        return sql, [tuple(to_sql(kind, doc.get(name)) for name, kind in columns) for doc in docs]

    def select(self, coll: Collection, where: Where, *, order: Order | None = None,
               limit: int | None = None) -> tuple[str, tuple[Any, ...]]:
        """``SELECT`` of every field (read the rows with ``columns(coll).document``)."""
        shape, params = self._shape(coll, where, json_in=False)
        sql = self._cached(("select", shape, order, limit), self._select_text, coll, shape, order, limit)
        return sql, params

    def count(self, coll: Collection, where: Where) -> tuple[str, tuple[Any, ...]]:
        shape, params = self._shape(coll, where, json_in=False)
        sql = self._cached(("count", shape), self._statement_text, "SELECT COUNT(*) FROM", coll, shape)
        return sql, params

    def update(self, coll: Collection, where: Where, changes: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        shape, params = self._shape(coll, where, json_in=False)
        names = tuple(changes)
        sql = self._cached(("update", shape, names), self._update_text, coll, shape, names)
        fields = coll.fields
        return sql, tuple(to_sql(fields[n], changes[n]) for n in names) + params

    def delete(self, coll: Collection, where: Where) -> tuple[str, tuple[Any, ...]]:
        shape, params = self._shape(coll, where, json_in=False)
        sql = self._cached(("delete", shape), self._statement_text, "DELETE FROM", coll, shape)
        return sql, params

    def delete_batch(self, coll: Collection, where: Where, rows: int) -> tuple[str, tuple[Any, ...]]:
        """``DELETE`` of at most ``rows`` of the matching rows (a delete over many, one batch a statement)."""
        shape, params = self._shape(coll, where, json_in=False)
        sql = self._cached(("delete_batch", shape, rows), self._delete_batch_text, coll, shape, rows)
        return sql, params

    def where(self, coll: Collection, where: Where, *, json_in: bool) -> tuple[str, tuple[Any, ...]]:
        """The `` WHERE …`` clause alone (empty for no conditions); ``json_in``: each ``In`` as one JSON
        array parameter, so a condition may name any number of values."""
        shape, params = self._shape(coll, where, json_in=json_in)
        return self._cached(("where", shape), self._clause, shape), params

    # -- shapes ------------------------------------------------------------------------------

    @staticmethod
    def _shape(coll: Collection, where: Where, *, json_in: bool) -> tuple[_Shape, tuple[Any, ...]]:
        """The conditions' shape (field names checked when the text is built) and their parameters."""
        fields = coll.fields
        shape: list[Any] = [coll.name]
        params: list[Any] = []
        for name, cond in where.items():
            kind = fields.get(name)
            if kind is None:
                raise coll.unknown_fields(where)
            if cond is None:
                shape.append((name, None))
            elif isinstance(cond, (Lt, Gt)):
                shape.append((name, type(cond)))
                params.append(to_sql(kind, cond.value))
            elif isinstance(cond, In):
                values = cond.values if kind in (str, int, float) else [to_sql(kind, v) for v in cond.values]
                if not values:
                    shape.append((name, In, 0))
                elif json_in:
                    shape.append((name, In, None))
                    params.append(json.dumps(list(values)))
                else:
                    shape.append((name, In, len(values)))
                    params.extend(values)
            else:
                shape.append(name)
                params.append(to_sql(kind, cond) if kind in ENCODED_KINDS else cond)
        return tuple(shape), tuple(params)

    @staticmethod
    def _clause(shape: _Shape) -> str:
        clauses: list[str] = []
        for part in shape[1:]:
            if isinstance(part, str):
                clauses.append(f'"{part}" = ?')
                continue
            name, kind, *count = part
            if kind is None:
                clauses.append(f'"{name}" IS NULL')
            elif kind is Lt or kind is Gt:
                clauses.append(f'"{name}" {"<" if kind is Lt else ">"} ?')
            elif count[0] == 0:
                clauses.append("0")  # IN () matches nothing
            elif count[0] is None:
                clauses.append(f'"{name}" IN (SELECT value FROM json_each(?))')
            else:
                clauses.append(f'"{name}" IN ({", ".join(["?"] * count[0])})')
        return " WHERE " + " AND ".join(clauses) if clauses else ""

    # -- text --------------------------------------------------------------------------------

    def _cached(self, key: _Shape, build: Callable[..., str], *args: Any) -> str:
        """The text cached under ``key``, else ``build(*args)``, cached (no closure made on a hit)."""
        sql = self._text.get(key)
        if sql is None:
            sql = build(*args)
            if len(self._text) >= MAX_CACHED_STATEMENTS:
                self._text.clear()
            self._text[key] = sql
        return sql

    @classmethod
    def _statement_text(cls, verb: str, coll: Collection, shape: _Shape) -> str:
        return f'{verb} "{coll.name}"{cls._clause(shape)}'

    @classmethod
    def _delete_batch_text(cls, coll: Collection, shape: _Shape, rows: int) -> str:
        table = f'"{coll.name}"'
        return f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}{cls._clause(shape)} LIMIT {int(rows)})"

    @staticmethod
    def _insert_text(coll: Collection, names: tuple[str, ...], verb: str) -> str:
        coll.check_fields(names)
        return f'{verb} INTO "{coll.name}" ({quoted(names)}) VALUES ({", ".join(["?"] * len(names))})'

    def _select_text(self, coll: Collection, shape: _Shape, order: Order | None, limit: int | None) -> str:
        sql = self.columns(coll).select + self._clause(shape)
        if order is not None:
            coll.check_fields([order.field])
            sql += f' ORDER BY "{order.field}" {"DESC" if order.descending else "ASC"}'
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return sql

    def _update_text(self, coll: Collection, shape: _Shape, names: tuple[str, ...]) -> str:
        coll.check_fields(names)
        sets = ", ".join(f'"{n}" = ?' for n in names)
        return f'UPDATE "{coll.name}" SET {sets}{self._clause(shape)}'
