"""Every call the admin UI makes into the promotion, contact, receipt and job services, in one place.

The UI never re-implements a rule: status, validity windows, assignment, redemption, reactivation and the API's
item presenter are the services' own; this module only picks what a page shows and shapes it for the templates.
When the services move to typed results (issue 12), this is the module that changes.
"""

from __future__ import annotations

import base64
import contextlib
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...kit.timeutil import end_of_day, local_date, start_of_day
from ...wire.engage import (
    BulkAssignCreate,
    ChannelType,
    MultichannelPromotionCreate,
    PromotionStatus,
    ValueType,
    is_web_url,
)
from ..contact.service import (
    NAME_KEY_LENGTH,
    ContactService,
    fold_name,
    normalize_email,
    normalize_key,
    normalize_phone,
)
from ..dialect import one_of, uuid_text
from ..exceptions import PromoflowError
from ..models import assignment, assignment_event, contact, job, promotion
from ..promotion import presenter
from ..promotion.assignment import AssignmentService, RedemptionService
from ..promotion.bulk import BULK_ASSIGN, bulk_payload, enqueue_bulk
from ..promotion.domain import Promotion, PromotionFace
from ..promotion.errors import PromotionNotFoundError
from ..promotion.redemption import Explanation, Reason, explain
from ..promotion.rules import CHANNEL_BITS, assignment_window, status_of, validate_channel_value
from ..promotion.service import PromotionService
from ..receipt.history import HistoryService
from ..receipt.ledger import LedgerService
from ..tenant.service import TenantContext
from ..worker.errors import JobNotFoundError

CHANNELS = ("POS", "ECOM", "OTHER")
PAGE_SIZE = 25

# ============================================================================================ formatting


def fmt_time(at: datetime | None, tz: ZoneInfo, *, seconds: bool = False) -> str:
    """'1 Jan 2027 00:00' in the tenant's zone, for the bounds of a validity window (the zone is named once next
    to it by the caller). A moment something happened is `local_time_text`."""
    if at is None:
        return ""
    local = at.astimezone(tz)
    return f"{local.day} {local:%b %Y %H:%M}" + (f":{local:%S}" if seconds else "")


def local_time_text(at: datetime | str | None, tz: ZoneInfo) -> str:
    """When something happened, as the pages show it: '2026-03-11 13:00 Europe/Stockholm', in the tenant's zone,
    named. ``at`` is an instant or the API's ISO 8601 text; a naive one is UTC. The ``local_time`` template filter
    (`web.py`) is this; CSVs keep ISO 8601."""
    if at is None or at == "":
        return ""
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.astimezone(tz):%Y-%m-%d %H:%M} {tz.key}"


def validity_text(start: date, end: date | None, tz: ZoneInfo) -> str:
    """'1 Jan 2027 00:00 – 31 Jan 2027 23:59:59 Europe/Stockholm': the promotion's whole days in its zone."""
    begin = fmt_time(start_of_day(start, tz), tz)
    if end is None:
        return f"from {begin} {tz.key}, no end date"
    return f"{begin} – {fmt_time(end_of_day(end, tz), tz, seconds=True)} {tz.key}"


def value_text(channel: dict[str, Any]) -> str:
    """How the customer sees a channel's value (from the API item's typed value)."""
    v = channel.get("value")
    vt = channel.get("valueType")
    if vt == "PERCENT" and v is not None:
        return f"{v} % off"
    if vt == "MONEY" and isinstance(v, dict):
        return f"{v['amount']} {v['currency']} off"
    return "" if v is None else str(v)


# ============================================================================================ promotions


def status_condition(status: PromotionStatus, now: datetime, tz: ZoneInfo) -> Any:
    """The promotions list's status filter in SQL, so a page of 10,000 promotions is one indexed query.

    MIRRORS ``promotion.rules.status_of`` (the one definition) exactly, using that a day's start and end in the
    zone are increasing in the day; ``tests/server/admin/test_gateway.py`` checks the two agree for every status
    around every boundary."""
    p = promotion.c
    today = local_date(now, tz)
    # end_of_day(E) < now  ⇔  E <= last_ended_day
    last_ended = today if now > end_of_day(today, tz) else today - timedelta(days=1)
    deactivated = and_(p.deactivated_at.is_not(None), p.deactivated_at <= now)
    ended_by_date = and_(p.end_date.is_not(None), p.end_date <= last_ended)
    live = and_(p.activated_at.is_not(None), ~deactivated, ~ended_by_date)
    if status is PromotionStatus.DRAFT:
        return p.activated_at.is_(None)
    if status is PromotionStatus.ENDED:
        return and_(p.activated_at.is_not(None), or_(deactivated, ended_by_date))
    if status is PromotionStatus.SCHEDULED:
        return and_(live, p.start_date > today)
    if status is PromotionStatus.ACTIVE:
        return and_(live, p.start_date <= today)
    return p.id.is_(None)  # Temporary is never produced


@dataclass
class PromotionFilters:
    status: PromotionStatus | None = None
    channel: ChannelType | None = None
    text: str = ""


@dataclass
class PromotionLine:
    id: uuid.UUID
    name: str
    external_id: str | None
    status: str
    validity: str
    channels: list[str]
    assigned: int
    redeemed: int


def _cursor(created: datetime, pid: uuid.UUID) -> str:
    raw = f"{created.astimezone(UTC).isoformat()}|{pid}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _parse_cursor(text: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        stamp, pid = raw.split("|")
        return datetime.fromisoformat(stamp), uuid.UUID(pid)
    except (ValueError, UnicodeDecodeError):
        return None


async def promotion_counts(
    conn: AsyncConnection, ctx: TenantContext, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int]]:
    """(assigned, redeemed) per promotion: the same figures as the promotion report's list."""
    if not ids:
        return {}
    a = assignment.c
    rows = await conn.execute(
        select(a.promotion_id, func.count(), func.count(a.redeemed_at))
        .where(a.tenant_id == ctx.tenant_id, a.promotion_id.in_(ids), a.deleted_at.is_(None))
        .group_by(a.promotion_id)
    )
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


async def list_promotions(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, f: PromotionFilters, after: str | None,
    size: int = PAGE_SIZE, *, with_counts: bool = False,
) -> tuple[list[PromotionLine], str | None]:  # fmt: skip
    """One page, newest first, and the cursor of the next page (keyset paging: as fast on page 400 as on 1).

    The assigned/redeemed figures are counted over the promotions' assignments (one pass per promotion, so
    100,000 assignments cost ~100 ms): the page asks for them separately (``promotion_counts``) unless
    ``with_counts``."""
    p = promotion.c
    conds = [p.tenant_id == ctx.tenant_id]
    if f.status is not None:
        conds.append(status_condition(f.status, now, ctx.tz))
    if f.channel is not None:
        conds.append(p.channel_mask.op("&")(CHANNEL_BITS[f.channel]) != 0)
    text = f.text.strip().lower()
    if text:
        conds.append(or_(func.lower(p.name).contains(text, autoescape=True),
                         func.lower(p.external_id).contains(text, autoescape=True)))  # fmt: skip
    cur = _parse_cursor(after)
    if cur is not None:
        conds.append(or_(p.created_at < cur[0], and_(p.created_at == cur[0], p.id < cur[1])))
    rows = (
        await conn.execute(
            select(promotion).where(and_(*conds)).order_by(p.created_at.desc(), p.id.desc()).limit(size + 1)
        )
    ).all()
    more = len(rows) > size
    rows = rows[:size]
    counts = await promotion_counts(conn, ctx, [r.id for r in rows]) if with_counts else {}
    lines = [
        PromotionLine(
            id=r.id,
            name=r.name,
            external_id=r.external_id,
            status=status_of(r, now, ctx.tz).value,
            validity=validity_text(r.start_date, r.end_date, ctx.tz),
            channels=[c["type"] for c in r.channels],
            assigned=counts.get(r.id, (0, 0))[0],
            redeemed=counts.get(r.id, (0, 0))[1],
        )
        for r in rows
    ]
    return lines, (_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


@dataclass
class PromotionView:
    id: uuid.UUID
    wire: dict[str, Any]  # the API's MultichannelPromotionModel
    status: str
    validity: str
    assigned: int
    redeemed: int
    activated_at: datetime | None
    deactivated_at: datetime | None

    @property
    def is_draft(self) -> bool:
        return self.status == PromotionStatus.DRAFT.value

    @property
    def can_assign(self) -> bool:
        return self.status in (PromotionStatus.ACTIVE.value, PromotionStatus.SCHEDULED.value)


async def get_promotion(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID
) -> PromotionView:
    svc = PromotionService(ctx, now)
    row = await svc.row(conn, pid)
    counts = await promotion_counts(conn, ctx, [pid])
    ever = await conn.scalar(select(exists().where(assignment.c.promotion_id == pid)))
    assigned, redeemed = counts.get(pid, (0, 0))
    return PromotionView(
        id=row.id,
        wire=presenter.definition(Promotion.of(row), now, ctx.tz, extended=True),
        status=status_of(row, now, ctx.tz).value,
        validity=validity_text(row.start_date, row.end_date, ctx.tz),
        assigned=assigned if ever else 0,
        redeemed=redeemed,
        activated_at=row.activated_at,
        deactivated_at=row.deactivated_at,
    )


async def has_assignments(conn: AsyncConnection, pid: uuid.UUID) -> bool:
    return bool(await conn.scalar(select(exists().where(assignment.c.promotion_id == pid))))


async def create_promotion(conn: AsyncConnection, ctx: TenantContext, now: datetime,
                           body: MultichannelPromotionCreate) -> uuid.UUID:  # fmt: skip
    out = await PromotionService(ctx, now).create(conn, body)
    return out.id


async def update_promotion(conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID,
                           body: MultichannelPromotionCreate) -> None:  # fmt: skip
    await PromotionService(ctx, now).update(conn, str(pid), body)


async def activate_promotion(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID
) -> None:
    await PromotionService(ctx, now).activate(conn, str(pid))


async def deactivate_promotion(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID
) -> None:
    await PromotionService(ctx, now).deactivate(conn, str(pid))


async def delete_promotion(conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID) -> None:
    await PromotionService(ctx, now).delete(conn, str(pid), None)


async def duplicate_promotion(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID
) -> uuid.UUID:
    """A new Draft with the same definition (no external id: it must stay unique)."""
    promo = Promotion.of(await PromotionService(ctx, now).row(conn, pid))
    wire = presenter.definition(promo, now, ctx.tz, extended=True)
    wire = {**wire, "name": f"Copy of {wire['name']}"[:450], "externalId": None}
    wire["validity"] = {**wire["validity"], "startDate": wire["validity"]["startDate"][:10],
                        "endDate": (wire["validity"].get("endDate") or "")[:10] or None}  # fmt: skip
    # A link or image stored before the API refused other schemes is not copied (the copy could not be saved).
    pres = wire.get("presentation") or {}
    wire["presentation"] = {
        k: v for k, v in pres.items() if k not in ("link", "imageUrl") or is_web_url(v or "")
    }
    return await create_promotion(conn, ctx, now, MultichannelPromotionCreate.model_validate(wire))


def activation_window(view: PromotionView, tz: ZoneInfo) -> str:
    """What the Activate confirmation states: 'from 1 Jan 2027 00:00 to 31 Jan 2027 23:59:59 Europe/Stockholm'."""
    v = view.wire["validity"]
    start = date.fromisoformat(v["startDate"][:10])
    end = date.fromisoformat(v["endDate"][:10]) if v.get("endDate") else None
    text = f"from {fmt_time(start_of_day(start, tz), tz)}"
    text += (
        f" to {fmt_time(end_of_day(end, tz), tz, seconds=True)} {tz.key}"
        if end
        else f" {tz.key}, with no end date"
    )
    av = v.get("assignedValidity")
    if av:
        text += f"; each assignment is valid until the end of the day {av['amount']} {av['unit'].lower()} after it is made"
    return text


@dataclass
class Preview:
    item: dict[str, Any]  # the API's ApiPromotionModel item, as the POS and the web shop receive it
    channels: list[dict[str, Any]]
    valid_from: str
    expires: str
    notes: list[str] = field(default_factory=list)


def preview(ctx: TenantContext, now: datetime, body: dict[str, Any]) -> Preview:
    """What a customer assigned now would receive, built by the API's own item presenter from the (possibly
    unsaved, possibly incomplete) editor fields."""
    notes: list[str] = []
    channels = []
    for ch in body.get("redemptionChannels") or []:
        try:
            value = validate_channel_value(ValueType(ch["valueType"]), ch.get("value"), ch["type"])
        except PromoflowError:
            notes.append(f"{ch['type']}: the value is not complete yet")
            continue
        locals_ = [lv for lv in ch.get("localValues") or [] if lv.get("amount") is not None]
        channels.append(
            {**ch, "value": value, "localValues": [{**lv, "amount": str(lv["amount"])} for lv in locals_]}
        )
    v = body.get("validity") or {}
    start = _day(v.get("startDate")) or local_date(now, ctx.tz)
    end = _day(v.get("endDate"))
    av = v.get("assignedValidity") or {}
    valid_from, valid_to = assignment_window(start, end, av.get("unit"), av.get("amount"), now, ctx.tz)
    row = SimpleNamespace(
        promotion_id=uuid.UUID(int=0), external_id=body.get("externalId"), name=body.get("name") or "",
        heading=(body.get("presentation") or {}).get("heading"),
        description=(body.get("presentation") or {}).get("description"),
        image_url=(body.get("presentation") or {}).get("imageUrl"), link=(body.get("presentation") or {}).get("link"),
        channels=channels,
    )  # fmt: skip
    item = presenter.item_of(
        uuid.UUID(int=0),
        presenter.face(PromotionFace.of(row), ctx.currency),
        valid_from,
        valid_to,
        None,
        ctx.tz,
        False,
    )
    for ch in item["redemptionChannels"]:
        ch["display"] = value_text(ch)
    return Preview(item, item["redemptionChannels"], fmt_time(valid_from, ctx.tz),
                   fmt_time(valid_to, ctx.tz, seconds=True) if valid_to else "", notes)  # fmt: skip


def _day(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


# ============================================================================================ assignment


@dataclass
class KeyLine:
    number: int
    text: str
    outcome: str  # assign | already-held | unknown | invalid | duplicate
    contact_id: str | None = None  # canonical text


@dataclass
class KeyCheck:
    lines: list[KeyLine]
    counts: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = Counter(line.outcome for line in self.lines)

    def count(self, outcome: str) -> int:
        return self.counts[outcome]

    @property
    def problem_count(self) -> int:
        """Lines that will not be assigned."""
        return len(self.lines) - self.counts["assign"]

    def problems(self, limit: int = 200) -> list[KeyLine]:
        """The first ``limit`` lines that will not be assigned (the page lists those, and counts the rest)."""
        return list(islice((line for line in self.lines if line.outcome != "assign"), limit))

    @property
    def to_assign(self) -> list[str]:
        return [line.contact_id for line in self.lines if line.outcome == "assign" and line.contact_id]


_DIGITS = re.compile(r"^[0-9]+$")
# Keys per look-up query: an IN list of 5,000 is one statement of index probes on both databases (SQLite allows
# 32,766 parameters, PostgreSQL 65,535), so a 100,000-line paste is ~30 queries, not ~500.
CHUNK = 5_000


def _classify(text: str) -> tuple[str, Any]:
    """What kind of key a pasted line is: a contact id (as its canonical text), an e-mail, a member number, or a
    phone number; ``member_or_phone`` (all digits) carries both readings."""
    guid = parse_guid(text)
    if guid is not None:
        return "id", str(guid)
    if "@" in text:
        return "email", normalize_email(text)
    if _DIGITS.match(text):
        try:
            return "member_or_phone", (text, normalize_phone(text))
        except PromoflowError:
            return "member", text
    if text.startswith(("+", "00")) or re.match(r"^[0-9\s\-().+]+$", text):
        return "phone", normalize_phone(text)
    return "member", normalize_key(text)


async def _lookup(conn: AsyncConnection, ctx: TenantContext, column: Any, values: set[Any]) -> dict[Any, str]:
    """key → contact id (canonical text: no 100,000 UUID objects to build and hash), CHUNK keys per query."""
    found: dict[Any, str] = {}
    items = list(values)
    cid = uuid_text(conn, contact.c.id)
    key = cid if column is contact.c.id else column  # ids are looked up by their text
    for i in range(0, len(items), CHUNK):
        for r in await conn.execute(
            select(key, cid).where(
                contact.c.tenant_id == ctx.tenant_id, one_of(conn, column, items[i : i + CHUNK])
            )
        ):
            found.setdefault(r[0], r[1])
    return found


async def check_keys(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID, text: str) -> KeyCheck:
    """Resolve pasted contact keys (one per line) to this tenant's contacts and say, for every line, what
    assigning would do: each line parsed once, the keys looked up per kind CHUNK at a time, and one query per
    CHUNK contacts for who already holds the promotion."""
    parsed: list[tuple[int, str, str | None, Any]] = []
    wanted: dict[str, set[Any]] = {"id": set(), "email": set(), "member": set(), "phone": set()}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip().strip(",;\"'").strip()
        if not line:
            continue
        try:
            kind, value = _classify(line)
        except PromoflowError:
            kind, value = None, None
        parsed.append((n, line, kind, value))
        if kind == "member_or_phone":
            wanted["member"].add(value[0])
            wanted["phone"].add(value[1])
        elif kind is not None:
            wanted[kind].add(value)
    by_id = await _lookup(conn, ctx, contact.c.id, wanted["id"])
    by_email = await _lookup(conn, ctx, contact.c.email, wanted["email"])
    by_member = await _lookup(conn, ctx, contact.c.member_number, wanted["member"])
    by_phone = await _lookup(conn, ctx, contact.c.mobile_phone, wanted["phone"])
    ids = list({*by_id.values(), *by_email.values(), *by_member.values(), *by_phone.values()})
    held: set[str] = set()
    holder = uuid_text(conn, assignment.c.contact_id)
    for i in range(0, len(ids), CHUNK):
        held.update(
            (
                await conn.execute(
                    select(holder).where(
                        one_of(conn, assignment.c.contact_id, ids[i : i + CHUNK]),
                        assignment.c.tenant_id == ctx.tenant_id, assignment.c.promotion_id == pid,
                        assignment.c.deleted_at.is_(None),
                    )
                )
            ).scalars()
        )  # fmt: skip
    seen: set[str] = set()
    out = []
    for n, line, kind, value in parsed:
        if kind is None:
            out.append(KeyLine(n, line, "invalid"))
            continue
        if kind == "id":
            cid = by_id.get(value)
        elif kind == "email":
            cid = by_email.get(value)
        elif kind == "phone":
            cid = by_phone.get(value)
        elif kind == "member":
            cid = by_member.get(value)
        else:  # all digits: a member number first, else a phone number
            cid = by_member.get(value[0]) or by_phone.get(value[1])
        if cid is None:
            outcome = "unknown"
        elif cid in seen:
            outcome = "duplicate"
        elif cid in held:
            outcome = "already-held"
        else:
            outcome = "assign"
        if cid is not None:
            seen.add(cid)
        out.append(KeyLine(n, line, outcome, cid))
    return KeyCheck(out)


MAX_BULK = 100_000


async def start_bulk(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID, ids: list[str],
    lines: list[list[Any]], origin: str,
) -> uuid.UUID:  # fmt: skip
    """Enqueue the API's bulk-assignment job for these contacts; ``lines`` (each line's input and outcome) ride
    along in the payload for the result CSV."""
    await AssignmentService(ctx, now)._promotion_for_assign(conn, pid)  # refuses Draft / Ended / unknown now
    payload = bulk_payload(
        pid, BulkAssignCreate(contact_ids=[str(i) for i in ids] or [str(uuid.UUID(int=0))])
    )
    if not ids:
        payload["contactIds"] = []
    counts = Counter(str(line[2]) for line in lines)
    payload["admin"] = {"origin": origin, "lines": lines, "counts": dict(counts)}
    row = await enqueue_bulk(conn, ctx, now, payload, len(ids), origin)
    return row.public_id  # type: ignore[no-any-return]


@dataclass
class JobView:
    id: uuid.UUID
    promotion_id: uuid.UUID
    status: str
    done: int
    total: int
    result: dict[str, Any] | None
    error: str | None
    counts: dict[str, int]
    origin: str
    lines: list[list[Any]] | None = None  # each line's [number, input, outcome, contact id], when asked for

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    def counted(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)

    @property
    def summary(self) -> str:
        return run_summary(self.result or {}, self.counts)


def run_summary(result: dict[str, Any], counts: dict[str, int]) -> str:
    """An assignment run's result in words, the same on its page and in the Jobs list: what the worker did
    (``result``) with what the check before it set aside (``counts``: unknown keys, duplicate lines…).

    A run's batch is its own (a new batch reference; the check leaves out the contacts that already hold the
    promotion and the repeated lines), so what the job counts as ``alreadyAssigned`` — held in this batch — was
    assigned by this very run: by an attempt of its job that a worker's stop or crash cut short, which the next
    attempt went over again. It is counted as assigned, not as "already held"."""
    assigned = result.get("assigned", 0) + result.get("alreadyAssigned", 0)
    text = (f"Assigned {assigned:,} · "
            f"already held {counts.get('already-held', 0):,} · "
            f"unknown {counts.get('unknown', 0) + result.get('notFound', 0):,}")  # fmt: skip
    invalid = counts.get("invalid", 0) + result.get("invalid", 0)
    if invalid:
        text += f" · invalid {invalid:,}"
    if counts.get("duplicate"):
        text += f" · duplicate lines {counts['duplicate']:,}"
    return text


async def get_bulk(conn: AsyncConnection, ctx: TenantContext, job_id: uuid.UUID, *,
                   with_lines: bool = False) -> JobView:  # fmt: skip
    """An assignment run's state. Its lines (100,000 of them: megabytes) are read only ``with_lines`` (the result
    CSV); the progress the page polls every second reads the counts taken at enqueue."""
    pl = job.c.payload
    mine = and_(job.c.public_id == job_id, job.c.tenant_id == ctx.tenant_id, job.c.kind == BULK_ASSIGN)
    lines_of = pl[("admin", "lines")]
    row = (
        await conn.execute(
            select(job.c.public_id, job.c.status, job.c.progress_done, job.c.progress_total, job.c.result,
                   job.c.error, pl[("promotionId",)].as_string().label("pid"),
                   pl[("admin", "origin")].as_string().label("origin"), pl[("admin", "counts")].label("counts"),
                   *([lines_of.label("lines")] if with_lines else []))
            .where(mine)
        )
    ).first()  # fmt: skip
    if row is None or row.origin is None:
        raise JobNotFoundError(f"assignment run {job_id} not found")
    lines = row.lines if with_lines else None
    counts = row.counts
    if counts is None:  # a run enqueued before the counts were stored with it
        if lines is None:
            lines = await conn.scalar(select(lines_of).where(mine))
        counts = dict(Counter(str(line[2]) for line in lines or []))
    return JobView(row.public_id, uuid.UUID(row.pid), row.status, row.progress_done, row.progress_total or 0,
                   row.result, row.error, counts, row.origin, lines)  # fmt: skip


async def assign_one(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, cid: uuid.UUID, pid: uuid.UUID
) -> None:
    await AssignmentService(ctx, now).assign(conn, cid, pid, source="admin")


# -------------------------------------------------------------------------------------------- segments


@dataclass
class Segment:
    contact_type: str = ""
    store: str = ""
    city: str = ""
    created_from: date | None = None
    created_to: date | None = None
    consent: str = ""  # acceptsEmail | acceptsSms | acceptsPostal
    redeemed_promotion: uuid.UUID | None = None
    redeemed: str = ""  # "has" | "has-not"

    def conditions(self, ctx: TenantContext) -> list[Any]:
        c = contact.c
        conds = [c.tenant_id == ctx.tenant_id]
        if self.contact_type:
            conds.append(c.contact_type == self.contact_type)
        if self.store:
            conds.append(c.store_external_id == self.store)
        if self.city:
            conds.append(func.lower(c.attributes["city"].as_string()) == self.city.strip().lower())
        if self.created_from:
            conds.append(c.created_at >= start_of_day(self.created_from, ctx.tz))
        if self.created_to:
            conds.append(c.created_at <= end_of_day(self.created_to, ctx.tz))
        if self.consent in ("acceptsEmail", "acceptsSms", "acceptsPostal"):
            conds.append(c.preferences[self.consent].as_boolean().is_(True))
        if self.redeemed_promotion is not None and self.redeemed in ("has", "has-not"):
            used = (
                select(assignment.c.id)
                .where(assignment.c.contact_id == c.id, assignment.c.tenant_id == ctx.tenant_id,
                       assignment.c.promotion_id == self.redeemed_promotion, assignment.c.redeemed_at.is_not(None))
                .exists()
            )  # fmt: skip
            conds.append(used if self.redeemed == "has" else ~used)
        return conds


async def segment_count(conn: AsyncConnection, ctx: TenantContext, seg: Segment) -> int:
    return int(
        await conn.scalar(select(func.count()).select_from(contact).where(and_(*seg.conditions(ctx)))) or 0
    )


async def segment_ids(conn: AsyncConnection, ctx: TenantContext, seg: Segment) -> list[uuid.UUID]:
    """Who matches now (the snapshot an assignment to a segment takes), at most MAX_BULK."""
    q = select(contact.c.id).where(and_(*seg.conditions(ctx))).order_by(contact.c.id).limit(MAX_BULK + 1)
    return list((await conn.execute(q)).scalars())


async def promotion_choices(conn: AsyncConnection, ctx: TenantContext, now: datetime, *,
                            assignable: bool = False, limit: int = 200) -> list[tuple[uuid.UUID, str]]:  # fmt: skip
    """Promotions to pick from (newest first): all, or those that can be assigned now (Active, Scheduled)."""
    conds = [promotion.c.tenant_id == ctx.tenant_id]
    if assignable:
        conds.append(or_(status_condition(PromotionStatus.ACTIVE, now, ctx.tz),
                         status_condition(PromotionStatus.SCHEDULED, now, ctx.tz)))  # fmt: skip
    rows = await conn.execute(
        select(promotion.c.id, promotion.c.name).where(and_(*conds))
        .order_by(promotion.c.created_at.desc(), promotion.c.id.desc()).limit(limit)
    )  # fmt: skip
    return [(r.id, r.name) for r in rows]


# ============================================================================================== contacts


@dataclass
class ContactLine:
    id: uuid.UUID
    name: str
    email: str | None
    phone: str | None
    member_number: str | None
    contact_type: str


def _contact_line(r: Any) -> ContactLine:
    attrs = r.attributes or {}
    name = " ".join(str(attrs[k]) for k in ("firstName", "lastName") if attrs.get(k))
    return ContactLine(r.id, name, r.email, r.mobile_phone, r.member_number, r.contact_type)


def _prefix(column: Any, folded: str) -> Any:
    """``column`` starts with ``folded``, as an index range (code-point order on both databases: ``NameKey``)."""
    cut = folded.rstrip("\U0010ffff")
    if not cut:
        return column >= folded
    return and_(column >= folded, column < cut[:-1] + chr(ord(cut[-1]) + 1))


async def search_contacts(
    conn: AsyncConnection, ctx: TenantContext, query: str, limit: int = 50
) -> list[ContactLine]:
    """By contact id, e-mail, phone, member number or external id (exact, one index probe each); else by name:
    contacts whose "first last" or "last first" name starts with the query, compared folded (case and accents
    ignored, ``contact.service.fold_name``): "lov" and "ada lov" find Ada Lovelace, "lovelace ada" too; "elace"
    does not. Two index ranges, names in order."""
    q = query.strip()
    if not q:
        return []
    c = contact.c
    mine = c.tenant_id == ctx.tenant_id
    keyed: list[Any] = []
    guid = parse_guid(q)
    if guid is not None:
        keyed.append(c.id == guid)
    if "@" in q:
        with contextlib.suppress(PromoflowError):
            keyed.append(c.email == normalize_email(q))
    with contextlib.suppress(PromoflowError):
        keyed.append(c.mobile_phone == normalize_phone(q))
    if len(q) <= 64:
        keyed += [c.member_number == q, c.external_id == q]
    rows: list[Any] = []
    for cond in keyed:  # one index probe each, not an OR the planner may scan for
        rows += (await conn.execute(select(contact).where(mine, cond).limit(limit))).all()
    folded = fold_name(q)[:NAME_KEY_LENGTH]
    if not rows and folded:
        for column in (c.name_key, c.name_key_rev):
            rows += (
                await conn.execute(
                    select(contact).where(mine, _prefix(column, folded)).order_by(column).limit(limit)
                )
            ).all()
        rows.sort(key=lambda r: (r.name_key or "", str(r.id)))
    seen: set[uuid.UUID] = set()
    out: list[ContactLine] = []
    for r in rows:
        if r.id not in seen and len(out) < limit:
            seen.add(r.id)
            out.append(_contact_line(r))
    return out


@dataclass
class CardAssignment:
    id: uuid.UUID
    promotion_id: uuid.UUID
    promotion_name: str
    state: str  # active | scheduled | redeemed | expired | deleted
    assigned_at: datetime
    valid_from: str
    expires: str
    redeemed_at: datetime | None
    channel: str | None
    store: str | None
    receipt: str | None
    reactivations: int
    shown_in: list[str]
    not_shown: dict[str, str]  # channel → why the till does not show it
    can_reactivate: bool
    promotion_note: str = ""


async def unused_held(
    conn: AsyncConnection, ctx: TenantContext, contact_id: uuid.UUID, pid: uuid.UUID
) -> int:
    """How many of the promotion's assignments the contact holds not redeemed (and not deleted)."""
    return int(
        await conn.scalar(
            select(func.count()).where(
                assignment.c.tenant_id == ctx.tenant_id,
                assignment.c.contact_id == contact_id,
                assignment.c.promotion_id == pid,
                assignment.c.redeemed_at.is_(None),
                assignment.c.deleted_at.is_(None),
            )
        )
        or 0
    )


@dataclass
class ContactCard:
    contact: dict[str, Any]  # the API's contact model
    name: str
    assignments: list[CardAssignment]
    receipts: list[dict[str, Any]]
    receipts_total: int
    timeline: list[dict[str, Any]]


def why_not_text(found: Explanation, channel: ChannelType, tz: ZoneInfo) -> str:
    """Why the till does not show an assignment: the redemption rule's own explanation
    (`promotion.redemption.explain`), in the card's words."""
    if not found.refusals:
        return "not shown"
    refusal, facts = found.refusals[0], found.facts
    if refusal.reason is Reason.REDEEMED:
        where = f" in store {facts.redeemed_store}" if facts.redeemed_store else ""
        return (
            f"already redeemed {local_time_text(facts.redeemed_at, tz)} via {facts.redeemed_channel}{where}"
        )
    if refusal.reason is Reason.EXPIRED:
        return f"expired {fmt_time(facts.valid_to, tz, seconds=True)}"
    if refusal.reason is Reason.NOT_YET_VALID:
        return f"not valid until {fmt_time(facts.valid_from, tz)}"
    if refusal.reason is Reason.CHANNEL:
        return f"not for {channel.value}"
    if refusal.reason is Reason.DELETED:
        return "deleted"
    if refusal.reason is Reason.DRAFT:
        return "draft"
    return refusal.error.message


CARD_ASSIGNMENTS = 200  # the newest
TIMELINE_ASSIGNMENTS = 30


async def contact_card(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, cid: uuid.UUID
) -> ContactCard:
    """A fixed number of queries whatever the contact holds: the contact, a page of its assignments with their
    promotions, the rule's explanation of that page per till channel (`explain`, one query each: shown or why
    not), the receipts page, and the ledger of the newest assignments (one query per source)."""
    data = await ContactService(ctx, now).get(conn, str(cid))
    attrs = data["attributes"]
    a, p = assignment.c, promotion.c
    rows = (
        await conn.execute(
            select(a.id, a.promotion_id, a.created_at, a.valid_from, a.valid_to, a.redeemed_at, a.redeemed_channel,
                   a.redeemed_store, a.redeemed_receipt_id, a.reactivation_count, a.deleted_at, p.name,
                   p.deactivated_at, p.channel_mask)
            .join(promotion, p.id == a.promotion_id)
            .where(a.contact_id == cid, a.tenant_id == ctx.tenant_id)
            .order_by(a.created_at.desc(), a.id.desc())
            .limit(CARD_ASSIGNMENTS)
        )
    ).all()  # fmt: skip
    ids = [r.id for r in rows]
    # What each till sees, and why not: the rule the API's fetch applies, for the page's assignments at once.
    judged: dict[ChannelType, dict[uuid.UUID, Explanation]] = {}
    for ch in (ChannelType.POS, ChannelType.ECOM):
        found = (
            await explain(conn, ctx, at=now, channel=ch, contact_id=cid, assignment_ids=ids) if ids else []
        )
        judged[ch] = {e.assignment_id: e for e in found}
    cards = []
    for r in rows:
        if r.deleted_at is not None:
            state = "deleted"
        elif r.redeemed_at is not None:
            state = "redeemed"
        elif r.valid_to is not None and r.valid_to < now:
            state = "expired"
        elif r.valid_from > now:
            state = "scheduled"
        else:
            state = "active"
        shown_in = [ch.value for ch, by_id in judged.items() if by_id[r.id].shown]
        not_shown = {ch.value: why_not_text(by_id[r.id], ch, ctx.tz) for ch, by_id in judged.items()
                     if not by_id[r.id].shown}  # fmt: skip
        cards.append(
            CardAssignment(
                id=r.id, promotion_id=r.promotion_id, promotion_name=r.name, state=state,
                assigned_at=r.created_at, valid_from=fmt_time(r.valid_from, ctx.tz),
                expires=fmt_time(r.valid_to, ctx.tz, seconds=True) if r.valid_to else "no end",
                redeemed_at=r.redeemed_at, channel=r.redeemed_channel, store=r.redeemed_store,
                receipt=r.redeemed_receipt_id, reactivations=r.reactivation_count, shown_in=shown_in,
                not_shown=not_shown, can_reactivate=state == "redeemed",
                promotion_note=(f"promotion deactivated {local_time_text(r.deactivated_at, ctx.tz)}; assignments made "
                                "before stay valid") if r.deactivated_at else "",
            )
        )  # fmt: skip
    history = await HistoryService(ctx, now).transactions(conn, cid, offset=0, count=20)
    timeline: list[dict[str, Any]] = []
    names = {r.id: r.name for r in rows}
    for ledger in await LedgerService(ctx, now).events_of(conn, ids[:TIMELINE_ASSIGNMENTS]):
        aid = uuid.UUID(ledger["assignmentId"])
        for ev in ledger["events"]:
            timeline.append({**ev, "promotion": names[aid], "assignmentId": str(aid)})
    timeline.sort(key=lambda e: e["at"], reverse=True)
    name = (
        " ".join(str(attrs[k]) for k in ("firstName", "lastName") if attrs.get(k))
        or attrs.get("email")
        or str(cid)
    )
    return ContactCard(data, name, cards, history["items"], history["totalCount"], timeline[:100])


async def reactivate(conn: AsyncConnection, ctx: TenantContext, now: datetime, aid: uuid.UUID, cid: uuid.UUID,
                     reason: str, by: str) -> None:  # fmt: skip
    """Undo a redemption (the API's reactivation, with its limit), recording who did it and why."""
    owner = await conn.scalar(select(assignment.c.contact_id).where(assignment.c.id == aid,
                                                                   assignment.c.tenant_id == ctx.tenant_id))  # fmt: skip
    if owner != cid:
        raise PromotionNotFoundError(f"promotion {aid} not found")
    await RedemptionService(ctx, now).reactivate(conn, aid, reason="admin", why=reason)
    await conn.execute(
        update(assignment_event)
        .where(assignment_event.c.assignment_id == aid, assignment_event.c.kind == "reactivated",
               assignment_event.c.at == now, assignment_event.c.tenant_id == ctx.tenant_id)
        .values(detail={"reason": reason, "by": by})
    )  # fmt: skip
