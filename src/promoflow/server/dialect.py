"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    String,
    Table,
    Uuid,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_ignore(conn: AsyncConnection, table: Table, values: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING (any unique constraint), on either database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).values(values).on_conflict_do_nothing()
    return sqlite.insert(table).values(values).on_conflict_do_nothing()


def unindexed(conn: AsyncConnection, column: Column[Any]) -> ColumnElement[Any]:
    """On SQLite the column as ``+table.column``, SQLite's documented way to keep a term out of index selection;
    elsewhere the column itself. For a condition that must hold (a tenant) next to a far more selective one (a
    list of ids): SQLite, with no statistics on a table an import is filling, ranks the id list below an index
    that merely starts with the tenant, and scans all of the tenant's rows per statement."""
    if conn.dialect.name != "sqlite":
        return column
    return literal_column(f"+{column.table.name}.{column.name}", type_=column.type)


def one_of(conn: AsyncConnection, column: Column[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` with the values as ONE parameter — an array on PostgreSQL (``= ANY``), a JSON array
    read by ``json_each`` on SQLite — so 5,000 values cost no 5,000 bound parameters to expand and convert (that
    was most of a 100,000-line paste check's time). Both databases probe the column's index per value. A UUID
    column takes UUIDs or their text."""
    is_uuid = isinstance(column.type, Uuid)
    if conn.dialect.name == "postgresql":
        if is_uuid:
            texts = bindparam(None, [str(v) for v in values], type_=postgresql.ARRAY(String()))
            return column == any_(cast(texts, postgresql.ARRAY(Uuid())))
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    items = [str(v).replace("-", "") for v in values] if is_uuid else list(values)  # SQLite's Uuid: 32 hex
    listed: Select[Any] = select(literal_column("value")).select_from(
        func.json_each(bindparam(None, json.dumps(items), String()))
    )
    return column.in_(listed.scalar_subquery())


def uuid_text(conn: AsyncConnection, column: Column[Any]) -> ColumnElement[str]:
    """A UUID column as its canonical text (``8-4-4-4-12`` lower-case hex), made by the database: reading
    100,000 ids as text skips building (and hashing) as many ``uuid.UUID`` objects."""
    if conn.dialect.name == "postgresql":
        return cast(column, String())
    parts = [
        func.substr(column, start, length) for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    ]
    text: ColumnElement[Any] = parts[0]
    for part in parts[1:]:
        text = text.concat("-").concat(part)
    return type_coerce(func.lower(text), String())
