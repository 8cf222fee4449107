"""What the per-record appliers share: one savepoint per record, and the verdict of a service's refusal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ....wire.errors import ErrorCode
from ....wire.xml import Record, Verdict
from ...exceptions import PromoflowError
from ..results import Outcome

# A refusal's verdict in a result file; every other code is `invalid` (with the code in the reason).
_VERDICT_BY_CODE = {
    ErrorCode.PROMOTION_EXPIRED: Verdict.EXPIRED,
    ErrorCode.PROMOTION_NOT_FOUND: Verdict.NOT_FOUND,
    ErrorCode.PROMOTION_NOT_ASSOCIATED_WITH_CONTACT: Verdict.NOT_FOUND,
    ErrorCode.CONTACT_NOT_FOUND: Verdict.NOT_FOUND,
}


def refusal(rec: Record[Any], key: str | None, exc: PromoflowError) -> Outcome:
    """A service said no: the Engage error code decides the verdict, its message is the reason."""
    verdict = _VERDICT_BY_CODE.get(exc.code, Verdict.INVALID)
    return Outcome(rec.index, verdict, rec.line, key, f"{exc.code.value}: {exc.message}")


async def each_in_savepoint(
    conn: AsyncConnection,
    records: list[Record[Any]],
    key: Callable[[Any], str | None],
    apply: Callable[[AsyncConnection, Record[Any]], Awaitable[Outcome]],
) -> list[Outcome]:
    """Apply records one by one, each in a savepoint: a refused record leaves no trace, the batch goes on."""
    outcomes: list[Outcome] = []
    for rec in records:
        try:
            async with conn.begin_nested():
                outcomes.append(await apply(conn, rec))
        except PromoflowError as exc:
            outcomes.append(refusal(rec, key(rec.value), exc))
    return outcomes


async def each_checked_first(
    conn: AsyncConnection,
    records: list[Record[Any]],
    key: Callable[[Any], str | None],
    apply: Callable[[AsyncConnection, Record[Any]], Awaitable[Outcome]],
) -> list[Outcome]:
    """Apply records one by one, for services that refuse a record before writing anything (no savepoint: two
    round trips fewer per record). Any other error fails the batch, which is retried as a whole."""
    outcomes: list[Outcome] = []
    for rec in records:
        try:
            outcomes.append(await apply(conn, rec))
        except PromoflowError as exc:
            outcomes.append(refusal(rec, key(rec.value), exc))
    return outcomes
