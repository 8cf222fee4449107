"""Tenants, their settings and their API keys (stored as SHA-256 hashes: keys are 256-bit random tokens, so a
fast hash is enough and keeps authentication cheap; the key itself is shown once, at creation or rotation)."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import api_key, tenant
from .errors import (
    InvalidIpAllowListError,
    InvalidSettingError,
    InvalidTenantNameError,
    InvalidTimeZoneError,
    TenantExistsError,
    TenantNotFoundError,
    UnknownSettingError,
)

DEFAULT_SETTINGS: dict[str, Any] = {
    # The key attribute of each contact type: unique per type, used by create to find an existing contact.
    "contactKeys": {"Member": "email", "Contact": "email"},
    # What `customKey` in look-ups means, and which attribute the server fills in when a contact has none.
    "customKey": "memberNumber",
    "reactivationLimit": 3,
    # How far a client's clock (a till's redeemedOn, a receipt's createdDate) may be off the server's: such an
    # instant may lie this much in the future, and this much before the assignment became valid (redemption.py).
    "clockSkewSeconds": 300,
}
MAX_CLOCK_SKEW_SECONDS = 3600
# Settings a tenant may set but need not: without them the server's defaults apply
# (PROMOFLOW_DEFAULT_RATE_LIMIT_*), so they are not copied into every tenant row, where they would freeze the
# default of the day the tenant was created and make the server's setting do nothing.
OPTIONAL_SETTINGS = frozenset({"rateLimitPerSecond", "rateLimitBurst"})

CONTACT_TYPES = ("Member", "Contact")


@dataclass(frozen=True)
class TenantContext:
    """Who is calling: the tenant and the key used. Every service takes this and filters by ``tenant_id``."""

    tenant_id: uuid.UUID
    name: str
    tz: ZoneInfo
    currency: str
    settings: dict[str, Any] = field(hash=False)
    key_id: uuid.UUID | None = None
    ip_allowlist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def reactivation_limit(self) -> int:
        return int(self.settings.get("reactivationLimit", 3))

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=int(self.settings.get("clockSkewSeconds", DEFAULT_SETTINGS["clockSkewSeconds"])))

    def key_attribute(self, contact_type: str) -> str:
        keys: dict[str, str] = self.settings.get("contactKeys", DEFAULT_SETTINGS["contactKeys"])
        return keys.get(contact_type, "email")

    @property
    def custom_key(self) -> str:
        return str(self.settings.get("customKey", "memberNumber"))


@dataclass(frozen=True)
class NewTenant:
    tenant_id: uuid.UUID
    name: str
    api_key: str


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_api_key() -> str:
    return "pf_" + secrets.token_urlsafe(32)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimeZoneError(f"unknown time zone {name!r}") from exc


def parse_allowlist(text: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not text:
        return ()
    nets = []
    for part in text.split(","):
        part = part.strip()
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise InvalidIpAllowListError(f"not an IP address or network: {part!r}") from exc
    return tuple(nets)


def context_from_row(row: Any, key_id: uuid.UUID | None = None, allow: str | None = None) -> TenantContext:
    settings = {**DEFAULT_SETTINGS, **(row.settings or {})}
    return TenantContext(
        tenant_id=row.id,
        name=row.name,
        tz=ZoneInfo(row.time_zone),
        currency=row.currency,
        settings=settings,
        key_id=key_id,
        ip_allowlist=parse_allowlist(allow),
    )


def _checked_setting(name: str, value: Any) -> Any:
    def bad(rule: str) -> InvalidSettingError:
        return InvalidSettingError(f"setting {name!r}: {rule}")

    if name == "rateLimitPerSecond":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
            raise bad("a number of requests per second, 0 for no limit")
        return float(value)
    if name in ("rateLimitBurst", "reactivationLimit"):
        low = 1 if name == "rateLimitBurst" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(f"a whole number of at least {low}")
    if name == "clockSkewSeconds" and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CLOCK_SKEW_SECONDS
    ):
        raise bad(f"a whole number of seconds from 0 to {MAX_CLOCK_SKEW_SECONDS}")
    return value


class TenantService:
    def __init__(self, now: datetime) -> None:
        self.now = now

    async def create(
        self,
        conn: AsyncConnection,
        name: str,
        *,
        time_zone: str = "Europe/Stockholm",
        currency: str = "SEK",
        settings: dict[str, Any] | None = None,
    ) -> NewTenant:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidTenantNameError("a tenant name is 1 to 100 characters")
        _zone(time_zone)
        existing = await conn.scalar(select(tenant.c.id).where(tenant.c.name == name))
        if existing is not None:
            raise TenantExistsError(f"tenant {name!r} already exists")
        tenant_id = uuid.uuid4()
        await conn.execute(
            insert(tenant).values(
                id=tenant_id,
                name=name,
                time_zone=time_zone,
                currency=currency.upper(),
                settings={**DEFAULT_SETTINGS, **(settings or {})},
                member_seq=0,
                created_at=self.now,
                updated_at=self.now,
            )
        )
        raw = await self.add_key(conn, tenant_id, label="default")
        return NewTenant(tenant_id=tenant_id, name=name, api_key=raw)

    async def add_key(
        self, conn: AsyncConnection, tenant_id: uuid.UUID, *, label: str | None = None, ip_allowlist: str | None = None
    ) -> str:
        parse_allowlist(ip_allowlist)
        raw = generate_api_key()
        await conn.execute(
            insert(api_key).values(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                key_hash=hash_key(raw),
                prefix=raw[:10],
                label=label,
                ip_allowlist=ip_allowlist,
                created_at=self.now,
            )
        )
        return raw

    async def by_name(self, conn: AsyncConnection, name: str) -> Any:
        row = (await conn.execute(select(tenant).where(tenant.c.name == name))).first()
        if row is None:
            raise TenantNotFoundError(f"no tenant named {name!r}")
        return row

    async def rotate_key(self, conn: AsyncConnection, name: str) -> str:
        """Revoke every active key of the tenant and issue a new one."""
        row = await self.by_name(conn, name)
        await conn.execute(
            update(api_key)
            .where(api_key.c.tenant_id == row.id, api_key.c.revoked_at.is_(None))
            .values(revoked_at=self.now)
        )
        return await self.add_key(conn, row.id, label="rotated")

    async def list(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        keys = (
            select(func.count())
            .where(api_key.c.tenant_id == tenant.c.id, api_key.c.revoked_at.is_(None))
            .scalar_subquery()
        )
        rows = (await conn.execute(select(tenant, keys.label("active_keys")).order_by(tenant.c.name))).all()
        return [
            {
                "tenantId": str(r.id),
                "name": r.name,
                "timeZone": r.time_zone,
                "currency": r.currency,
                "activeKeys": r.active_keys,
                "createdOn": r.created_at.isoformat(),
            }
            for r in rows
        ]

    async def authenticate(self, conn: AsyncConnection, raw_key: str) -> TenantContext | None:
        row = (
            await conn.execute(
                select(tenant, api_key.c.id.label("key_id"), api_key.c.ip_allowlist)
                .join(api_key, api_key.c.tenant_id == tenant.c.id)
                .where(api_key.c.key_hash == hash_key(raw_key), api_key.c.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            return None
        return context_from_row(row, key_id=row.key_id, allow=row.ip_allowlist)

    async def update_settings(self, conn: AsyncConnection, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        row = await self.by_name(conn, name)
        values: dict[str, Any] = {"updated_at": self.now}
        settings = {**DEFAULT_SETTINGS, **(row.settings or {})}
        for k, v in changes.items():
            if k == "timeZone":
                _zone(str(v))
                values["time_zone"] = str(v)
            elif k == "currency":
                values["currency"] = str(v).upper()
            elif k in OPTIONAL_SETTINGS and v is None:
                settings.pop(k, None)  # back to the server's default
            elif k in DEFAULT_SETTINGS or k in OPTIONAL_SETTINGS:
                settings[k] = _checked_setting(k, v)
            else:
                raise UnknownSettingError(f"unknown tenant setting {k!r}")
        values["settings"] = settings
        await conn.execute(update(tenant).where(tenant.c.id == row.id).values(**values))
        return settings
