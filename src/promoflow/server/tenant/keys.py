"""A tenant's named API keys: create (the secret is shown once), list, revoke, rotate, and each key's IP
allow-list; and `KeyUsage`, which keeps each key's "last used at" without a write on the request path.

A key is stored as the SHA-256 of its secret (see ``service.py``) under a name unique among the tenant's active
keys, so a chain gives each store system its own key and revokes one without touching the others. Revoking or
rotating takes effect on a running server when it next looks the key up: at once in the process that did it (it
drops the key from its cache, `forget`), within ``PROMOFLOW_API_KEY_CACHE_SECONDS`` on every other process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.clock import Clock
from ...kit.timeutil import iso
from ..audit import SYSTEM, Actor, record
from ..db import Database
from ..models import api_key
from .errors import ApiKeyExistsError, ApiKeyNotFoundError, InvalidApiKeyNameError, InvalidSettingError
from .service import generate_api_key, hash_key, parse_allowlist

if TYPE_CHECKING:
    from ..http.edge import AppState

log = logging.getLogger("promoflow.api")

SCOPES = ("api", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
NAME_RULE = "1 to 64 characters: letters, digits, space, '.', '_' and '-', starting with a letter or a digit"


def check_key_name(name: str) -> str:
    text = (name or "").strip()
    if not _NAME.match(text):
        raise InvalidApiKeyNameError(f"{name!r} is not a valid API key name: {NAME_RULE}")
    return text


def normalise_allowlist(value: str | Sequence[str] | None) -> str | None:
    """Addresses or networks (text separated by commas or a list) → the stored text; None or empty → none."""
    text = value or "" if value is None or isinstance(value, str) else ",".join(value)
    nets = parse_allowlist(text)
    return ", ".join(str(n) for n in nets) or None


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidSettingError(f"scope {scope!r}: one of {', '.join(SCOPES)}")
    return scope


@dataclass(frozen=True)
class KeyView:
    id: uuid.UUID
    name: str
    prefix: str
    scope: str
    ip_allowlist: tuple[str, ...]
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "scope": self.scope,
            "ipAllowList": list(self.ip_allowlist),
            "createdOn": iso(self.created_at, tz),
            "rotatedOn": iso(self.rotated_at, tz),
            "lastUsedOn": iso(self.last_used_at, tz),
            "revokedOn": iso(self.revoked_at, tz),
            "active": self.active,
        }


@dataclass(frozen=True)
class NewKey:
    """A key with its secret: the only time the secret is known (it is stored hashed)."""

    key: KeyView
    secret: str

    def as_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {**self.key.as_json(tz), "apiKey": self.secret}


def _view(row: Any) -> KeyView:
    allow = tuple(p.strip() for p in (row.ip_allowlist or "").split(",") if p.strip())
    return KeyView(
        id=row.id, name=row.name, prefix=row.prefix, scope=row.scope, ip_allowlist=allow,
        created_at=row.created_at, rotated_at=row.rotated_at, last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )  # fmt: skip


class ApiKeyService:
    """Every method takes the tenant's id: the edge (API key, admin session, CLI by tenant name) resolved it.
    Each change is recorded in the audit log under ``actor``, in the caller's transaction."""

    def __init__(self, now: datetime, actor: Actor = SYSTEM) -> None:
        self.now = now
        self.actor = actor

    async def create(
        self,
        conn: AsyncConnection,
        tenant_id: uuid.UUID,
        name: str,
        *,
        allow: str | Sequence[str] | None = None,
        scope: str = "api",
    ) -> NewKey:
        name, allowlist, scope = check_key_name(name), normalise_allowlist(allow), check_scope(scope)
        await self._free(conn, tenant_id, name)
        secret = generate_api_key()
        key_id = uuid.uuid4()
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(api_key).values(
                        id=key_id, tenant_id=tenant_id, key_hash=hash_key(secret), prefix=secret[:10], name=name,
                        scope=scope, ip_allowlist=allowlist, created_at=self.now,
                    )
                )  # fmt: skip
        except IntegrityError as exc:  # another request took the name between the check and the insert
            raise ApiKeyExistsError(f"the tenant has an active API key named {name!r}") from exc
        await record(conn, tenant_id, self.actor, "api_key.create", "api_key", key_id, at=self.now,
                     after={"name": name, "prefix": secret[:10], "scope": scope, "ipAllowList": allowlist})  # fmt: skip
        return NewKey(await self._get(conn, tenant_id, key_id), secret)

    async def _free(self, conn: AsyncConnection, tenant_id: uuid.UUID, name: str) -> None:
        taken = await conn.scalar(
            select(api_key.c.id).where(
                api_key.c.tenant_id == tenant_id, api_key.c.name == name, api_key.c.revoked_at.is_(None)
            )
        )
        if taken is not None:
            raise ApiKeyExistsError(f"the tenant has an active API key named {name!r}")

    async def _get(self, conn: AsyncConnection, tenant_id: uuid.UUID, key_id: uuid.UUID) -> KeyView:
        row = (
            await conn.execute(
                select(api_key).where(api_key.c.tenant_id == tenant_id, api_key.c.id == key_id)
            )
        ).one()
        return _view(row)

    async def active(self, conn: AsyncConnection, tenant_id: uuid.UUID, name: str) -> KeyView:
        row = (
            await conn.execute(
                select(api_key).where(
                    api_key.c.tenant_id == tenant_id,
                    api_key.c.name == (name or "").strip(),
                    api_key.c.revoked_at.is_(None),
                )
            )
        ).first()
        if row is None:
            raise ApiKeyNotFoundError(f"no active API key named {name!r}")
        return _view(row)

    async def list(
        self, conn: AsyncConnection, tenant_id: uuid.UUID, *, include_revoked: bool = True
    ) -> list[KeyView]:
        """Active keys first (by name), then revoked ones (latest first)."""
        q = select(api_key).where(api_key.c.tenant_id == tenant_id)
        if not include_revoked:
            q = q.where(api_key.c.revoked_at.is_(None))
        views = [_view(r) for r in await conn.execute(q)]
        active = sorted((v for v in views if v.active), key=lambda v: v.name.lower())
        revoked = sorted(
            (v for v in views if not v.active), key=lambda v: v.revoked_at or v.created_at, reverse=True
        )
        return active + revoked

    async def revoke(self, conn: AsyncConnection, tenant_id: uuid.UUID, name: str) -> KeyView:
        key = await self.active(conn, tenant_id, name)
        await conn.execute(update(api_key).where(api_key.c.id == key.id).values(revoked_at=self.now))
        await record(conn, tenant_id, self.actor, "api_key.revoke", "api_key", key.id, at=self.now,
                     before={"name": key.name, "prefix": key.prefix, "revoked": False}, after={"revoked": True})  # fmt: skip
        return await self._get(conn, tenant_id, key.id)

    async def rotate(self, conn: AsyncConnection, tenant_id: uuid.UUID, name: str) -> NewKey:
        """A new secret for the named key (same name, scope and allow-list); the old secret stops working. Its
        last use is cleared: "never" until the new secret is put to use."""
        key = await self.active(conn, tenant_id, name)
        secret = generate_api_key()
        await conn.execute(
            update(api_key)
            .where(api_key.c.id == key.id)
            .values(key_hash=hash_key(secret), prefix=secret[:10], rotated_at=self.now, last_used_at=None)
        )
        await record(conn, tenant_id, self.actor, "api_key.rotate", "api_key", key.id, at=self.now,
                     before={"name": key.name, "prefix": key.prefix}, after={"prefix": secret[:10]})  # fmt: skip
        return NewKey(await self._get(conn, tenant_id, key.id), secret)

    async def set_allowlist(
        self, conn: AsyncConnection, tenant_id: uuid.UUID, name: str, allow: str | Sequence[str] | None
    ) -> KeyView:
        key = await self.active(conn, tenant_id, name)
        allowlist = normalise_allowlist(allow)
        await conn.execute(update(api_key).where(api_key.c.id == key.id).values(ip_allowlist=allowlist))
        if (allowlist or "") != ", ".join(key.ip_allowlist):
            await record(conn, tenant_id, self.actor, "api_key.allow_list", "api_key", key.id, at=self.now,
                         before={"name": key.name, "ipAllowList": ", ".join(key.ip_allowlist) or None},
                         after={"ipAllowList": allowlist})  # fmt: skip
        return await self._get(conn, tenant_id, key.id)


def forget(st: AppState, key_id: uuid.UUID) -> None:
    """Drop a revoked or rotated key from this process's cache: it stops working here at once."""
    for digest, (ctx, _) in list(st.key_cache.items()):
        if ctx.key_id == key_id:
            st.key_cache.pop(digest, None)


# ------------------------------------------------------------------------------------------------ last used


class KeyUsage:
    """ "Last used at" per key, written without touching the request path: `note` is one dict look-up, and at
    most once per ``every`` seconds per key (and process) it queues the instant for a background task that
    writes it. So a key's last use is known to within a minute (the default), at the cost of one small write per
    key per minute, whatever the request rate. Best effort: a crash loses at most the queued instants."""

    def __init__(self, db: Database, clock: Clock, *, every: float = 60.0) -> None:
        self.db = db
        self.clock = clock
        self.every = every
        self._noted: dict[str, float] = {}
        self._pending: dict[uuid.UUID, datetime] = {}
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def note(self, token: str, key_id: uuid.UUID | None, mono: float) -> None:
        """A use of the key at ``mono`` (the caller's monotonic clock reading). ``token`` is any string that
        stands for the key in this process (the edge's cache key: a string's hash is cached, a UUID's is not), so
        the common case is one dict look-up; the wall clock is read only when the use is to be written."""
        last = self._noted.get(token)
        if last is not None and mono - last < self.every:
            return
        if key_id is None:
            return
        if len(self._noted) > 100_000:
            self._noted.clear()
        self._noted[token] = mono
        self._pending[key_id] = self.clock.now()
        self._wake.set()

    async def flush(self) -> int:
        """Write the queued instants (the latest per key; never moves a later one back). Returns how many.
        One write at a time: a flush that comes while the background task is writing waits for that write, so
        when it returns every use noted before the call is in the database."""
        async with self._writing:
            pending, self._pending = self._pending, {}
            if not pending:
                return 0
            await self._write(pending)
            return len(pending)

    async def _write(self, pending: dict[uuid.UUID, datetime]) -> None:
        stmt = (
            update(api_key)
            .where(api_key.c.id == bindparam("kid"))
            .where((api_key.c.last_used_at.is_(None)) | (api_key.c.last_used_at < bindparam("at")))
            .values(last_used_at=bindparam("at"))
        )
        async with self.db.write() as conn:
            await conn.execute(stmt, [{"kid": k, "at": at} for k, at in pending.items()])

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="promoflow-key-usage")

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a database hiccup: try again with the next use
                log.warning("api_key.last_used_write_failed", exc_info=True)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()
