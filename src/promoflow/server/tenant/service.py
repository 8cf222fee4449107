"""Tenants, their settings and their API keys (stored as SHA-256 hashes: keys are 256-bit random tokens, so a
fast hash is enough and keeps authentication cheap; the key itself is shown once, at creation or rotation)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.currency import is_currency
from ...kit.timeutil import iso
from ..audit import SYSTEM, Actor, diff, record
from ..models import api_key, contact, tenant
from ..receipt.errors import InvalidCurrencyError
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
# (PROMOFLOW_DEFAULT_RATE_LIMIT_*, PROMOFLOW_RETENTION_*), so they are not copied into every tenant row, where
# they would freeze the default of the day the tenant was created and make the server's setting do nothing.
OPTIONAL_SETTINGS = frozenset(
    {"rateLimitPerSecond", "rateLimitBurst", "ipAllowList", "processedFileRetentionDays"}
)

CONTACT_TYPES = ("Member", "Contact")
# The attributes a contact can be keyed by (each has a normalised look-up column on the contact table).
KEY_ATTRIBUTES = ("email", "mobilePhone", "socialSecurityNumber", "memberNumber", "externalId")

# A tenant's name is also its FTP user name: short, ASCII, no spaces, no characters FTP clients or URLs mangle.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RESERVED_NAMES = frozenset({"anonymous", "ftp"})
NAME_RULE = (
    "a tenant name is 1 to 64 characters: lowercase letters a-z, digits, '.', '_' and '-', starting with a letter "
    "or a digit (it is also the tenant's FTP user name)"
)


def check_tenant_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidTenantNameError(f"{name!r} is not a valid tenant name: {NAME_RULE}")
    if name in _RESERVED_NAMES:
        raise InvalidTenantNameError(f"{name!r} is reserved (FTP clients log in anonymously with it)")
    return name


def check_currency(code: str) -> str:
    upper = code.strip().upper()
    if not is_currency(upper):
        raise InvalidCurrencyError(f"{code!r} is not an ISO 4217 currency code such as SEK or EUR")
    return upper


@dataclass(frozen=True)
class TenantContext:
    """Who is calling: the tenant, the key used, and the actor its changes are recorded under (the audit log).
    Every service takes this and filters by ``tenant_id``."""

    tenant_id: uuid.UUID
    name: str
    tz: ZoneInfo
    currency: str
    settings: dict[str, Any] = field(hash=False)
    key_id: uuid.UUID | None = None
    # The tenant's IP allow-list (`ipAllowList`) and the key's own: a request must pass both (an empty one
    # allows any address).
    ip_allowlist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    key_allowlist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    key_name: str | None = None
    key_scope: str = "api"
    actor: Actor = SYSTEM

    def acting(self, actor: Actor) -> TenantContext:
        """The same tenant, with changes recorded under ``actor`` (the edge that knows the caller sets it)."""
        return dataclasses.replace(self, actor=actor)

    @property
    def reactivation_limit(self) -> int:
        return int(self.settings.get("reactivationLimit", 3))

    @functools.cached_property  # read for every line of a redemption file
    def clock_skew(self) -> timedelta:
        return timedelta(
            seconds=int(self.settings.get("clockSkewSeconds", DEFAULT_SETTINGS["clockSkewSeconds"]))
        )

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


def context_from_row(
    row: Any,
    key_id: uuid.UUID | None = None,
    allow: str | None = None,
    actor: Actor = SYSTEM,
    *,
    key_name: str | None = None,
    key_scope: str = "api",
) -> TenantContext:
    """The tenant as services see it. ``allow`` is the key's own IP allow-list, checked in addition to the
    tenant's (`ipAllowList`)."""
    settings = {**DEFAULT_SETTINGS, **(row.settings or {})}
    return TenantContext(
        tenant_id=row.id,
        name=row.name,
        tz=ZoneInfo(row.time_zone),
        currency=row.currency,
        settings=settings,
        key_id=key_id,
        ip_allowlist=parse_allowlist(",".join(settings.get("ipAllowList") or [])),
        key_allowlist=parse_allowlist(allow),
        key_name=key_name,
        key_scope=key_scope,
        actor=actor,
    )


# ------------------------------------------------------------------------------------------------ settings
#
# `promoflow tenant set NAME KEY=VALUE…` takes text; services take typed values. Each setting has a parser
# (text → value) and a check (value → normalised value, or InvalidSettingError naming the rule).


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidSettingError(f"setting {name!r}: a whole number of at least {low}")
    return value


def _check_clock_skew(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CLOCK_SKEW_SECONDS:
        raise InvalidSettingError(
            f"setting {name!r}: a whole number of seconds from 0 to {MAX_CLOCK_SKEW_SECONDS}"
        )
    return value


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise InvalidSettingError(f"setting {name!r}: a number of requests per second, 0 for no limit")
    return float(value)


def _check_key_attribute(name: str, value: Any) -> str:
    if value not in KEY_ATTRIBUTES:
        raise InvalidSettingError(f"setting {name!r}: one of {', '.join(KEY_ATTRIBUTES)}")
    return str(value)


def _check_allowlist(name: str, value: Any) -> list[str]:
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else value
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise InvalidSettingError(f"setting {name!r}: IP addresses or networks, separated by commas")
    nets = parse_allowlist(",".join(p for p in parts if p))
    if not nets:
        raise InvalidSettingError(
            f"setting {name!r}: at least one address or network (leave it empty to remove)"
        )
    return [str(n) for n in nets]


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # the check names the rule


def _integer(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


SETTING_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "rateLimitPerSecond": _check_rate,
    "rateLimitBurst": lambda n, v: _whole(n, v, 1),
    "reactivationLimit": lambda n, v: _whole(n, v, 0),
    "customKey": _check_key_attribute,
    "ipAllowList": _check_allowlist,
    "processedFileRetentionDays": lambda n, v: _whole(n, v, 0),
    "clockSkewSeconds": _check_clock_skew,
}
SETTING_PARSERS: dict[str, Callable[[str], Any]] = {
    "rateLimitPerSecond": _number,
    "rateLimitBurst": _integer,
    "reactivationLimit": _integer,
    "processedFileRetentionDays": _integer,
    "clockSkewSeconds": _integer,
}


def setting_names() -> list[str]:
    """Every setting `tenant set` takes (contact keys as `contactKeys.<type>`)."""
    names = ["timeZone", "currency", *OPTIONAL_SETTINGS, *DEFAULT_SETTINGS]
    names.remove("contactKeys")
    names += [f"contactKeys.{t}" for t in CONTACT_TYPES]
    return sorted(set(names), key=str.lower)


def _canonical(name: str) -> str:
    by_lower = {n.lower(): n for n in setting_names()}
    found = by_lower.get(name.strip().lower())
    if found is None:
        raise UnknownSettingError(f"unknown tenant setting {name!r}; one of {', '.join(setting_names())}")
    return found


def parse_setting_text(assignments: list[str]) -> dict[str, Any]:
    """``["rateLimitPerSecond=50", "contactKeys.Member=mobilePhone", "ipAllowList="]`` → changes for
    ``TenantService.update_settings`` (an empty value: back to the default)."""
    changes: dict[str, Any] = {}
    for item in assignments:
        key, eq, text = item.partition("=")
        if not eq:
            raise InvalidSettingError(f"{item!r}: write KEY=VALUE (KEY= resets KEY to its default)")
        name = _canonical(key)
        text = text.strip()
        if text == "":
            value: Any = None
        elif name in SETTING_PARSERS:
            value = SETTING_PARSERS[name](text)
        elif name.startswith("contactKeys.") or name in ("timeZone", "currency", "customKey", "ipAllowList"):
            value = text
        else:
            # A setting another feature declares in DEFAULT_SETTINGS: read the text as its default's type.
            default = DEFAULT_SETTINGS.get(name)
            value = text
            if isinstance(default, bool):
                if text.lower() not in ("true", "false"):
                    raise InvalidSettingError(f"setting {name!r}: true or false")
                value = text.lower() == "true"
            elif isinstance(default, int | float):
                value = _number(text)
            elif not isinstance(default, str):
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    raise InvalidSettingError(f"setting {name!r}: a JSON value") from exc
        if name.startswith("contactKeys."):
            changes.setdefault("contactKeys", {})[name.split(".", 1)[1]] = value
        else:
            changes[name] = value
    return changes


class TenantService:
    def __init__(self, now: datetime, actor: Actor = SYSTEM) -> None:
        self.now = now
        self.actor = actor  # who the audit log names for the changes made here

    async def create(
        self,
        conn: AsyncConnection,
        name: str,
        *,
        time_zone: str = "Europe/Stockholm",
        currency: str = "SEK",
        settings: dict[str, Any] | None = None,
    ) -> NewTenant:
        check_tenant_name(name)
        _zone(time_zone)
        currency = check_currency(currency)
        existing = await conn.scalar(select(tenant.c.id).where(tenant.c.name == name))
        if existing is not None:
            raise TenantExistsError(f"tenant {name!r} already exists")
        tenant_id = uuid.uuid4()
        await conn.execute(
            insert(tenant).values(
                id=tenant_id,
                name=name,
                time_zone=time_zone,
                currency=currency,
                settings={**DEFAULT_SETTINGS, **(settings or {})},
                created_at=self.now,
                updated_at=self.now,
            )
        )
        await record(conn, tenant_id, self.actor, "tenant.create", "tenant", tenant_id, at=self.now,
                     after={"name": name, "timeZone": time_zone, "currency": currency})  # fmt: skip
        raw = await self.add_key(conn, tenant_id, label="default")
        return NewTenant(tenant_id=tenant_id, name=name, api_key=raw)

    async def add_key(
        self,
        conn: AsyncConnection,
        tenant_id: uuid.UUID,
        *,
        label: str | None = None,
        ip_allowlist: str | None = None,
    ) -> str:
        """A new key named ``label`` (or "unnamed-…") and its secret (`keys.ApiKeyService.create`, which records
        it in the audit log)."""
        from .keys import ApiKeyService

        keys = ApiKeyService(self.now, self.actor)
        name = label if label is not None else "unnamed-" + uuid.uuid4().hex[:8]
        return (await keys.create(conn, tenant_id, name, allow=ip_allowlist)).secret

    async def by_name(self, conn: AsyncConnection, name: str) -> Any:
        row = (await conn.execute(select(tenant).where(tenant.c.name == name))).first()
        if row is None:
            raise TenantNotFoundError(f"no tenant named {name!r}")
        return row

    async def rotate_key(self, conn: AsyncConnection, name: str) -> str:
        """Revoke every active key of the tenant and issue a new one named "default" (`promoflow key rotate`
        rotates one named key and leaves the others alone)."""
        row = await self.by_name(conn, name)
        revoked = (
            await conn.execute(
                update(api_key)
                .where(api_key.c.tenant_id == row.id, api_key.c.revoked_at.is_(None))
                .values(revoked_at=self.now)
                .returning(api_key.c.id, api_key.c.name, api_key.c.prefix)
            )
        ).all()
        for key in revoked:
            await record(conn, row.id, self.actor, "api_key.rotate", "api_key", key.id, at=self.now,
                         before={"name": key.name, "prefix": key.prefix, "revoked": False},
                         after={"revoked": True})  # fmt: skip
        return await self.add_key(conn, row.id, label="default")

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
                select(
                    tenant,
                    api_key.c.id.label("key_id"),
                    api_key.c.ip_allowlist,
                    api_key.c.name.label("key_name"),
                    api_key.c.scope.label("key_scope"),
                    api_key.c.prefix.label("key_prefix"),
                )
                .join(api_key, api_key.c.tenant_id == tenant.c.id)
                .where(api_key.c.key_hash == hash_key(raw_key), api_key.c.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            return None
        actor = Actor.api_key(row.key_name, row.key_prefix, row.key_id)
        return context_from_row(
            row, key_id=row.key_id, allow=row.ip_allowlist, actor=actor, key_name=row.key_name,
            key_scope=row.key_scope,
        )  # fmt: skip

    async def update_settings(
        self, conn: AsyncConnection, name: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """Validate and store ``changes`` (typed values; None: back to the default). All or nothing: one invalid
        change and nothing is stored. Running servers see the new settings when they next look the API key up
        (within PROMOFLOW_API_KEY_CACHE_SECONDS)."""
        row = await self.by_name(conn, name)
        values: dict[str, Any] = {"updated_at": self.now}
        settings = {**DEFAULT_SETTINGS, **(row.settings or {})}
        for k, v in changes.items():
            if k == "timeZone":
                if v is None:
                    raise InvalidSettingError("setting 'timeZone' cannot be empty")
                _zone(str(v))
                values["time_zone"] = str(v)
            elif k == "currency":
                if v is None:
                    raise InvalidSettingError("setting 'currency' cannot be empty")
                values["currency"] = check_currency(str(v))
            elif k == "contactKeys":
                settings["contactKeys"] = await self._contact_keys(conn, row, settings["contactKeys"], v)
            elif k in OPTIONAL_SETTINGS and v is None:
                settings.pop(k, None)  # back to the server's default
            elif k in DEFAULT_SETTINGS and v is None:
                settings[k] = DEFAULT_SETTINGS[k]
            elif k in SETTING_CHECKS:
                settings[k] = SETTING_CHECKS[k](k, v)
            elif k in DEFAULT_SETTINGS:
                default = DEFAULT_SETTINGS[k]
                if type(v) is not type(default) and not (isinstance(default, float) and isinstance(v, int)):
                    raise InvalidSettingError(f"setting {k!r}: a {type(default).__name__} like {default!r}")
                settings[k] = v
            else:
                raise UnknownSettingError(
                    f"unknown tenant setting {k!r}; one of {', '.join(setting_names())}"
                )
        values["settings"] = settings
        await conn.execute(update(tenant).where(tenant.c.id == row.id).values(**values))
        old = {
            "timeZone": row.time_zone,
            "currency": row.currency,
            **{**DEFAULT_SETTINGS, **(row.settings or {})},
        }
        new = {"timeZone": values.get("time_zone", row.time_zone), "currency": values.get("currency", row.currency),
               **settings}  # fmt: skip
        before, after = diff(old, new)
        if after or before:
            await record(
                conn, row.id, self.actor, "settings.update", "tenant", row.id, before, after, at=self.now
            )
        return settings

    async def _contact_keys(
        self, conn: AsyncConnection, row: Any, current: dict[str, str], change: Any
    ) -> dict[str, str]:
        if not isinstance(change, dict) or not set(change) <= set(CONTACT_TYPES):
            raise InvalidSettingError(
                f"setting 'contactKeys': one key attribute per type ({', '.join(CONTACT_TYPES)})"
            )
        keys = dict(current)
        for contact_type, attribute in change.items():
            name = f"contactKeys.{contact_type}"
            attribute = DEFAULT_SETTINGS["contactKeys"][contact_type] if attribute is None else attribute
            _check_key_attribute(name, attribute)
            if attribute == keys.get(contact_type):
                continue
            # Each contact's key value is stored normalised beside its attributes (unique per tenant and type):
            # a new key attribute would leave every existing contact keyed by the old one.
            held = await conn.scalar(
                select(func.count())
                .select_from(contact)
                .where(contact.c.tenant_id == row.id, contact.c.contact_type == contact_type)
            )
            if held:
                raise InvalidSettingError(
                    f"setting {name!r}: the tenant already has {held} {contact_type} contacts keyed by "
                    f"{keys.get(contact_type)!r}; the key attribute can change only while it has none"
                )
            keys[contact_type] = attribute
        return keys

    async def show(self, conn: AsyncConnection, name: str, server: Any = None) -> dict[str, Any]:
        """A tenant's settings for `promoflow tenant show`: what is stored, and in ``effective`` what applies
        (the server's defaults, from ``server`` — a Settings — filling what the tenant leaves unset)."""
        row = await self.by_name(conn, name)
        stored = {**DEFAULT_SETTINGS, **(row.settings or {})}
        from .keys import ApiKeyService

        keys = await ApiKeyService(self.now).list(conn, row.id)
        tz = ZoneInfo(row.time_zone)
        out: dict[str, Any] = {
            "tenantId": str(row.id),
            "name": row.name,
            "timeZone": row.time_zone,
            "currency": row.currency,
            "createdOn": iso(row.created_at, tz),
            "updatedOn": iso(row.updated_at, tz),
            "settings": stored,
            "apiKeys": [k.as_json(tz) for k in keys],
            "ftpUser": row.name,
        }
        if server is not None:
            out["effective"] = {
                "rateLimitPerSecond": stored.get("rateLimitPerSecond", server.default_rate_limit_per_second),
                "rateLimitBurst": stored.get("rateLimitBurst", server.default_rate_limit_burst),
                "processedFileRetentionDays": stored.get(
                    "processedFileRetentionDays", server.retention_processed_files_days
                ),
                "ipAllowList": stored.get("ipAllowList", []),
            }
        return out
