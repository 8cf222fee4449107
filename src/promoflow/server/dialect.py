"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, ColumnElement, Table, literal_column
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
