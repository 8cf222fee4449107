"""Bulk assignment (A6 extension): one promotion to many contacts, as a background job with progress.

Every assignment of a batch carries the batch's reference, and (tenant, promotion, contact, batch) is unique: a
job that is retried, recovered after a crash, or enqueued twice for the same ``batchId`` never assigns a contact
twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...wire.engage import BulkAssignCreate
from ..audit import record
from ..contact.service import _NORMALIZERS, contact_type_of
from ..exceptions import InvalidPayloadError, PromoflowError
from ..models import contact
from ..tenant.service import TenantContext
from ..worker import queue
from ..worker.runner import JobContext, PermanentJobError
from .assignment import AssignmentService

BULK_ASSIGN = "bulk_assign"
CHUNK = 500


def bulk_payload(promotion_id: uuid.UUID, body: BulkAssignCreate) -> dict[str, Any]:
    if not body.contact_ids and not body.contact_keys:
        raise InvalidPayloadError("give contactIds or contactKeys")
    return {
        "promotionId": str(promotion_id),
        "contactIds": body.contact_ids or [],
        "contactKeys": body.contact_keys or [],
        "contactType": contact_type_of(body.contact_type),
        "batchRef": "bulk:" + (body.batch_id or uuid.uuid4().hex),
    }


async def enqueue_bulk(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, payload: dict[str, Any], total: int, origin: str
) -> Any:
    """Enqueue a bulk assignment (the API's, or the admin UI's pasted keys or segment) and record it: one audit
    entry per run, in the transaction that enqueues it (the run's result is on its job)."""
    row = await queue.enqueue(conn, ctx.tenant_id, BULK_ASSIGN, payload, now, total=total)
    pid = uuid.UUID(payload["promotionId"])
    after = {"promotionId": pid, "contacts": total, "origin": origin, "jobId": row.public_id}
    await record(conn, ctx.tenant_id, ctx.actor, "assignment.bulk", "job", row.public_id, after=after, at=now,
                 promotion_id=pid)  # fmt: skip
    return row


async def run_bulk_assign(job: JobContext) -> dict[str, Any]:
    p = job.payload
    promotion_id = uuid.UUID(p["promotionId"])
    ctype = p["contactType"]
    key_attr = job.tenant.key_attribute(ctype)
    norm = _NORMALIZERS.get(key_attr)
    refs: list[tuple[str, str]] = [("id", v) for v in p["contactIds"]] + [
        ("key", v) for v in p["contactKeys"]
    ]
    total = len(refs)
    assigned = invalid = not_found = 0
    missing: list[str] = []
    for start in range(0, total, CHUNK):
        chunk = refs[start : start + CHUNK]
        ids: list[uuid.UUID] = []
        keys: dict[str, str] = {}
        for kind, raw in chunk:
            if kind == "id":
                guid = parse_guid(str(raw))
                if guid is None:
                    invalid += 1
                else:
                    ids.append(guid)
            else:
                try:
                    keys[norm(str(raw)) if norm else str(raw).strip()] = str(raw)
                except PromoflowError:
                    invalid += 1
        async with job.db.write() as conn:
            if keys:
                found = (
                    await conn.execute(
                        select(contact.c.id, contact.c.key_value).where(
                            contact.c.tenant_id == job.tenant.tenant_id,
                            contact.c.contact_type == ctype,
                            contact.c.key_value.in_(list(keys)),
                        )
                    )
                ).all()
                ids.extend(r.id for r in found)
                missing_keys = set(keys) - {r.key_value for r in found}
                not_found += len(missing_keys)
                missing.extend(keys[k] for k in sorted(missing_keys))
            if ids:
                try:
                    new, existing = await AssignmentService(job.tenant, job.now()).assign_many(
                        conn, promotion_id, ids, p["batchRef"]
                    )
                except PromoflowError as exc:
                    raise PermanentJobError(f"{exc.code}: {exc.message}") from exc
                assigned += new
                for guid in ids:
                    if guid not in existing:
                        not_found += 1
                        missing.append(str(guid))
        await job.progress(min(start + CHUNK, total), total)
    matched = total - invalid - not_found
    return {
        "assigned": assigned,
        "alreadyAssigned": matched - assigned,
        "notFound": not_found,
        "invalid": invalid,
        "notFoundSample": missing[:100],
    }
