"""The Audit log page (filter by actor, object and time; keyset paging; CSV of everything that matches), and the
History slices the contact card and the promotion page show.

Who reads it: admins and marketers read the whole log; viewers see only the History sections of the contact card
and the promotion page (the changes of an object they can already read), not the tenant-wide log, which also
shows who manages users, keys and settings.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response, StreamingResponse

from ...kit.csvtext import cell
from ...kit.guid import parse_guid
from ...kit.timeutil import end_of_day, filter_day, start_of_day
from ..audit import ActorKind
from ..audit.service import AuditEntry, AuditFilter, every, page
from ..http.edge import state_of
from ..models import contact, promotion
from ..tenant.service import TenantContext
from .common import admin_router, now_of, reading
from .gateway import local_time_text
from .sessions import AdminContext
from .web import is_htmx, marketer, render, templates

router = admin_router()

PAGE = 50
HISTORY = 20
ACTIONS = (
    "promotion.create", "promotion.update", "promotion.activate", "promotion.deactivate", "promotion.delete",
    "assignment.create", "assignment.bulk", "redemption.reactivate", "contact.create", "contact.update",
    "import.apply", "tenant.create", "settings.update", "api_key.create", "api_key.revoke", "api_key.rotate",
    "ftp.rotate", "user.create", "user.invite", "user.withdraw", "user.join", "user.role", "user.disable",
    "user.enable", "user.reset", "user.remove",
)  # fmt: skip
ACTOR_KINDS = {
    "user": "Person (admin UI)",
    "api_key": "API key",
    "file": "File import",
    "system": "Operator / system",
}
ACTION_TEXT = {
    "promotion.create": "created promotion", "promotion.update": "edited promotion",
    "promotion.activate": "activated promotion", "promotion.deactivate": "deactivated promotion",
    "promotion.delete": "deleted promotion", "assignment.create": "assigned", "assignment.bulk": "bulk assignment",
    "redemption.reactivate": "reactivated a redemption", "contact.create": "created contact",
    "contact.update": "edited contact", "import.apply": "imported a file", "tenant.create": "created the tenant",
    "settings.update": "changed settings", "api_key.create": "created an API key",
    "api_key.revoke": "revoked an API key", "api_key.rotate": "rotated an API key",
    "ftp.rotate": "rotated the FTP password", "user.create": "added a user", "user.invite": "invited a user",
    "user.withdraw": "withdrew an invitation", "user.join": "joined by invitation", "user.role": "changed a role",
    "user.disable": "disabled a user", "user.enable": "enabled a user", "user.reset": "reset a password",
    "user.remove": "removed a user",
}  # fmt: skip


INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


@pass_context
def value_text(context: Context, value: Any, limit: int = 300) -> str:
    """A before/after value as a person reads it: an instant (ISO 8601 with its offset) as every page shows a
    time, other text as is, nothing as '—', the rest as compact JSON."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str) and INSTANT.fullmatch(value):
        # Not a real instant (month 13), or one no zone can show (year 1 at +14:00): shown as typed.
        with contextlib.suppress(ValueError, OverflowError):
            return local_time_text(value, context["who"].tenant.tz)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


templates.filters["audit_value"] = value_text
templates.globals["actor_kinds"] = ACTOR_KINDS


@dataclass
class Line:
    """One entry as the page shows it."""

    entry: AuditEntry
    action: str
    object_label: str
    object_href: str | None


@dataclass
class Filters:
    """The page's filters as typed (kept to redraw the form and to build the CSV and paging links)."""

    actor: str = ""
    kind: str = ""
    object_id: str = ""
    object_type: str = ""
    action: str = ""
    contact: str = ""
    promotion: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def of(cls, q: Any) -> Filters:
        def get(name: str, size: int = 255) -> str:
            return str(q.get(name) or "").strip()[:size]

        return cls(get("actor"), get("kind", 10), get("object", 64), get("type", 30), get("action", 40),
                   get("contact", 36), get("promotion", 36), get("from", 10), get("to", 10))  # fmt: skip

    def query(self) -> str:
        from urllib.parse import urlencode

        pairs = {"actor": self.actor, "kind": self.kind, "object": self.object_id, "type": self.object_type,
                 "action": self.action, "contact": self.contact, "promotion": self.promotion, "from": self.since,
                 "to": self.until}  # fmt: skip
        return urlencode({k: v for k, v in pairs.items() if v})

    def to_filter(self, ctx: TenantContext) -> AuditFilter:
        since, until = filter_day(self.since), filter_day(self.until)
        return AuditFilter(
            actor=self.actor,
            actor_kind=ActorKind(self.kind) if self.kind in ACTOR_KINDS else None,
            object_type=self.object_type,
            object_id=self.object_id.lower() if parse_guid(self.object_id) else self.object_id,
            action=self.action if self.action in ACTIONS else "",
            contact_id=parse_guid(self.contact),
            promotion_id=parse_guid(self.promotion),
            since=start_of_day(since, ctx.tz) if since else None,
            until=end_of_day(until, ctx.tz) if until else None,
        )


async def _names(
    conn: AsyncConnection, ctx: TenantContext, entries: list[AuditEntry]
) -> dict[uuid.UUID, str]:
    """Names of the page's promotions and contacts (two small look-ups), so an entry reads 'promotion Spring'."""
    pids = {e.promotion_id for e in entries if e.promotion_id}
    cids = {e.contact_id for e in entries if e.contact_id}
    names: dict[uuid.UUID, str] = {}
    if pids:
        rows = await conn.execute(
            select(promotion.c.id, promotion.c.name).where(
                promotion.c.tenant_id == ctx.tenant_id, promotion.c.id.in_(pids)
            )
        )
        names.update({r.id: r.name for r in rows})
    if cids:
        rows = await conn.execute(
            select(contact.c.id, contact.c.email, contact.c.key_value).where(
                contact.c.tenant_id == ctx.tenant_id, contact.c.id.in_(cids)
            )
        )
        names.update({r.id: r.email or r.key_value or str(r.id) for r in rows})
    return names


def _line(e: AuditEntry, ctx: TenantContext, names: dict[uuid.UUID, str]) -> Line:
    label, href = f"{e.object_type} {e.object_id}", None
    gone = e.action == "promotion.delete"
    if e.object_type == "promotion" and e.promotion_id:
        name = names.get(e.promotion_id) or (e.before or e.after or {}).get("name") or e.object_id
        label, href = f"promotion {name}", None if gone else f"/admin/promotions/{e.promotion_id}"
    elif e.object_type == "contact" and e.contact_id:
        label, href = f"contact {names.get(e.contact_id, e.object_id)}", f"/admin/contacts/{e.contact_id}"
    elif e.object_type == "assignment" and e.contact_id:
        promo = names.get(e.promotion_id) if e.promotion_id else None
        who = names.get(e.contact_id, str(e.contact_id))
        label = (
            f"{promo or 'a promotion'} to {who}"
            if e.action == "assignment.create"
            else f"{promo or 'promotion'} of {who}"
        )
        href = f"/admin/contacts/{e.contact_id}"
    elif e.object_type == "job" and e.promotion_id:
        after = e.after or {}
        label = f"{after.get('contacts', '?')} contacts to {names.get(e.promotion_id, 'a promotion')}"
        href = f"/admin/runs/{e.object_id}" if after.get("origin") in ("keys", "segment") else None
    elif e.object_type == "import":
        label = f"{(e.after or {}).get('kind') or 'file'} import {e.object_id}"
    elif e.object_type == "tenant":
        label = f"tenant {ctx.name}"
    elif e.object_type == "user":
        label = f"user {(e.before or {}).get('email') or (e.after or {}).get('email') or e.object_id}"
    return Line(e, ACTION_TEXT.get(e.action, e.action), label, href)


async def lines(conn: AsyncConnection, ctx: TenantContext, entries: list[AuditEntry]) -> list[Line]:
    names = await _names(conn, ctx, entries)
    return [_line(e, ctx, names) for e in entries]


async def history(
    conn: AsyncConnection, ctx: TenantContext, *, contact_id: uuid.UUID | None = None,
    promotion_id: uuid.UUID | None = None,
) -> tuple[list[Line], bool]:  # fmt: skip
    """An object's own slice, newest first (the contact card's and promotion page's History), and whether there
    is more than it shows."""
    found, more = await page(conn, ctx.tenant_id, AuditFilter(contact_id=contact_id, promotion_id=promotion_id),
                             size=HISTORY)  # fmt: skip
    return await lines(conn, ctx, found), more is not None


@router.get("/audit")
async def audit_log(request: Request, who: AdminContext = Depends(marketer)) -> Response:
    f = Filters.of(request.query_params)
    after = request.query_params.get("after")
    async with reading(request) as conn:
        found, nxt = await page(conn, who.tenant.tenant_id, f.to_filter(who.tenant), after, PAGE)
        shown = await lines(conn, who.tenant, found)
    values: dict[str, Any] = {"lines": shown, "next": nxt, "after": after, "filters": f, "actions": ACTIONS}
    if is_htmx(request) and request.headers.get("hx-target") == "audit-results":
        return render(request, "_audit_rows.html", **values)
    return render(request, "audit.html", **values)


CSV_HEADER = ["time", "actorKind", "actor", "actorRef", "action", "objectType", "objectId", "contactId",
              "promotionId", "before", "after"]  # fmt: skip


def csv_row(e: AuditEntry, ctx: TenantContext) -> list[str]:
    def js(v: Any) -> str:
        return "" if v is None else json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    return [e.at.astimezone(ctx.tz).isoformat(), e.actor.kind.value, cell(e.actor.name), e.actor.ref or "",
            e.action, e.object_type, cell(e.object_id), str(e.contact_id or ""), str(e.promotion_id or ""),
            js(e.before), js(e.after)]  # fmt: skip


@router.get("/audit.csv")
async def audit_csv(request: Request, who: AdminContext = Depends(marketer)) -> Response:
    """Every entry the filters match, newest first, streamed (read a thousand at a time)."""
    f = Filters.of(request.query_params).to_filter(who.tenant)
    db, ctx = state_of(request).db, who.tenant

    async def rows() -> AsyncIterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_HEADER)
        async with db.read() as conn:
            n = 0
            async for e in every(conn, ctx.tenant_id, f):
                writer.writerow(csv_row(e, ctx))
                n += 1
                if n % 500 == 0:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue()

    stamp = now_of(request).astimezone(ctx.tz).strftime("%Y%m%d-%H%M")
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="audit-{ctx.name}-{stamp}.csv"',
                                      "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})  # fmt: skip
