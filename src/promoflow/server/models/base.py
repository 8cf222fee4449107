"""Shared table machinery: one MetaData with a naming convention (Alembic batch mode on SQLite needs named
constraints), column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps them as naive UTC text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalType(TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC is a float)."""

    impl = Numeric(18, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(18, 4))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value) if not isinstance(value, Decimal) else value


class UuidList(TypeDecorator[list[Any]]):
    """A list of UUIDs: a native ``uuid[]`` on PostgreSQL, a JSON array of hex strings on SQLite."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Uuid()))
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return [u.hex for u in value]

    def process_result_value(self, value: Any, dialect: Dialect) -> list[Any] | None:
        if value is None or dialect.name == "postgresql":
            return cast("list[Any] | None", value)
        return [uuid.UUID(u) for u in value]


JsonType = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Text compared in code-point order on both databases (SQLite's BINARY; PostgreSQL's "C"): a prefix search is an
# index range there whatever the database's collation.
NameKey = String(255).with_variant(String(255, collation="C"), "postgresql")


def not_null(column: str) -> dict[str, Any]:
    """An index's keyword arguments that make it partial on both databases: only the rows where ``column`` is set
    (a filter ``column = …`` implies it, so both planners still use the index)."""
    return partial(f"{column} IS NOT NULL")


def partial(condition: str) -> dict[str, Any]:
    """An index's keyword arguments that make it partial on both databases: only the rows where ``condition``
    (SQL, literals only: a query must carry the same condition, written the same way, for either planner to use
    the index)."""
    where = text(condition)
    return {"postgresql_where": where, "sqlite_where": where}


def tenant_fk() -> Column[Any]:
    return Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False)


def tenant_column() -> Column[Any]:
    """The tenant of a row of a table a tenant's concurrent writes insert into at request or file rate (contacts,
    assignments, receipts, the audit log): no foreign key. A foreign-key check locks the tenant's row (``FOR KEY
    SHARE``), and concurrent lockers of one row take turns rewriting its lock word (a MultiXact each): the whole
    tenant's writes queued on one row, 35-40 % of a bare insert's throughput at 32 concurrent (migration 0024).
    Tenants are never deleted, and every such row's tenant comes from the authenticated context."""
    return Column("tenant_id", Uuid, nullable=False)


def created_at() -> Column[datetime]:
    return Column("created_at", UTCDateTime, nullable=False)


def updated_at() -> Column[datetime]:
    return Column("updated_at", UTCDateTime, nullable=False)
