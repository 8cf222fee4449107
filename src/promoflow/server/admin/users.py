"""Admin users and their roles per tenant: what `promoflow user …` and the Users screen call (the screen adds
people by invitation, `invitations`, never with `UserService.create`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..audit import SYSTEM, Actor, record
from ..contact.errors import InvalidEmailAddressError
from ..contact.service import normalize_email
from ..exceptions import BadRequestError, ConflictError, NotFoundError
from ..models import admin_membership, admin_session, admin_user, tenant
from ..tenant.service import TenantService
from .passwords import generate_password, hash_password


class Role(StrEnum):
    """What a member of a tenant may do there; each role includes the ones before it."""

    VIEWER = "viewer"
    MARKETER = "marketer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 0, Role.MARKETER: 1, Role.ADMIN: 2}


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError as exc:
        raise BadRequestError(f"unknown role {value!r}; use admin, marketer or viewer") from exc


def parse_email(value: str) -> str:
    try:
        return normalize_email(value)
    except InvalidEmailAddressError as exc:
        raise InvalidEmailAddressError(f"not a valid e-mail address: {value!r}") from exc


@dataclass(frozen=True)
class NewUser:
    email: str
    password: str | None  # None when an existing user was added to another tenant
    tenant: str
    role: Role


class UserService:
    def __init__(self, now: datetime, actor: Actor = SYSTEM) -> None:
        self.now = now
        self.actor = actor  # who the audit log names for the changes made here

    async def _audit(self, conn: AsyncConnection, tenant_ids: list[uuid.UUID], action: str, user: Any,
                     before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:  # fmt: skip
        """One entry in each tenant the change concerns (a user may belong to several)."""
        for tid in tenant_ids:
            await record(conn, tid, self.actor, action, "user", user.id, {"email": user.email, **(before or {})},
                         after, at=self.now)  # fmt: skip

    async def _tenants_of(self, conn: AsyncConnection, user_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            (await conn.execute(select(admin_membership.c.tenant_id).where(admin_membership.c.user_id == user_id)))
            .scalars()
        )  # fmt: skip

    async def _user(self, conn: AsyncConnection, email: str) -> Any:
        row = (await conn.execute(select(admin_user).where(admin_user.c.email == parse_email(email)))).first()
        if row is None:
            raise NotFoundError(f"no user {email!r}")
        return row

    async def create(self, conn: AsyncConnection, email: str, tenant_name: str, role: str) -> NewUser:
        """A new user with a generated password and a role in one tenant; for an existing user, the role in one
        more tenant (their password does not change). The operator's command: it acts on any account at once, so
        a tenant's admin invites instead."""
        address, r = parse_email(email), parse_role(role)
        t = await TenantService(self.now).by_name(conn, tenant_name)
        row = (await conn.execute(select(admin_user).where(admin_user.c.email == address))).first()
        password = None
        if row is None:
            password = generate_password()
            user_id = uuid.uuid4()
            await conn.execute(
                insert(admin_user).values(
                    id=user_id, email=address, password_hash=hash_password(password), created_at=self.now,
                    updated_at=self.now,
                )
            )  # fmt: skip
        else:
            user_id = row.id
            member = await conn.scalar(
                select(admin_membership.c.role).where(
                    admin_membership.c.user_id == user_id, admin_membership.c.tenant_id == t.id
                )
            )
            if member is not None:
                raise ConflictError(f"{address} is already a {member} of {t.name}; use set-role")
        await conn.execute(
            insert(admin_membership).values(
                user_id=user_id, tenant_id=t.id, role=r.value, created_at=self.now
            )
        )
        await record(conn, t.id, self.actor, "user.create", "user", user_id, at=self.now,
                     after={"email": address, "role": r.value, "newUser": password is not None})  # fmt: skip
        return NewUser(address, password, t.name, r)

    async def list(self, conn: AsyncConnection, tenant_name: str | None = None) -> list[dict[str, Any]]:
        q = (
            select(admin_user.c.email, admin_user.c.disabled_at, tenant.c.name, admin_membership.c.role)
            .join(admin_membership, admin_membership.c.user_id == admin_user.c.id)
            .join(tenant, tenant.c.id == admin_membership.c.tenant_id)
            .order_by(admin_user.c.email, tenant.c.name)
        )
        if tenant_name is not None:
            q = q.where(tenant.c.name == tenant_name)
        return [
            {"email": r.email, "tenant": r.name, "role": r.role, "disabled": r.disabled_at is not None}
            for r in await conn.execute(q)
        ]

    async def set_role(
        self, conn: AsyncConnection, email: str, tenant_name: str, role: str
    ) -> dict[str, Any]:
        user, r = await self._user(conn, email), parse_role(role)
        t = await TenantService(self.now).by_name(conn, tenant_name)
        old = await conn.scalar(
            select(admin_membership.c.role).where(
                admin_membership.c.user_id == user.id, admin_membership.c.tenant_id == t.id
            )
        )
        done = await conn.execute(
            update(admin_membership)
            .where(admin_membership.c.user_id == user.id, admin_membership.c.tenant_id == t.id)
            .values(role=r.value)
        )
        if done.rowcount == 0:
            raise NotFoundError(f"{user.email} is not a member of {t.name}")
        if old != r.value:
            await self._audit(conn, [t.id], "user.role", user, {"role": old}, {"role": r.value})
        return {"email": user.email, "tenant": t.name, "role": r.value}

    async def remove(self, conn: AsyncConnection, email: str, tenant_name: str) -> None:
        """Take a user out of one tenant (their sessions in it end)."""
        user = await self._user(conn, email)
        t = await TenantService(self.now).by_name(conn, tenant_name)
        gone = await conn.execute(
            delete(admin_membership)
            .where(admin_membership.c.user_id == user.id, admin_membership.c.tenant_id == t.id)
            .returning(admin_membership.c.role)
        )
        for (role,) in gone.all():
            await self._audit(conn, [t.id], "user.remove", user, {"role": role}, None)
        await self._end_sessions(conn, user.id, t.id)

    async def disable(self, conn: AsyncConnection, email: str) -> dict[str, Any]:
        """The user can no longer sign in; every session of theirs ends now."""
        user = await self._user(conn, email)
        await conn.execute(
            update(admin_user)
            .where(admin_user.c.id == user.id)
            .values(disabled_at=self.now, updated_at=self.now)
        )
        if user.disabled_at is None:
            tenants = await self._tenants_of(conn, user.id)
            await self._audit(conn, tenants, "user.disable", user, {"disabled": False}, {"disabled": True})
        await self._end_sessions(conn, user.id)
        return {"email": user.email, "disabled": True}

    async def enable(self, conn: AsyncConnection, email: str) -> dict[str, Any]:
        user = await self._user(conn, email)
        await conn.execute(
            update(admin_user).where(admin_user.c.id == user.id).values(disabled_at=None, updated_at=self.now)
        )
        if user.disabled_at is not None:
            tenants = await self._tenants_of(conn, user.id)
            await self._audit(conn, tenants, "user.enable", user, {"disabled": True}, {"disabled": False})
        return {"email": user.email, "disabled": False}

    async def reset_password(self, conn: AsyncConnection, email: str) -> dict[str, Any]:
        """A new generated password (shown once); every session of theirs ends now."""
        user = await self._user(conn, email)
        password = generate_password()
        await conn.execute(
            update(admin_user)
            .where(admin_user.c.id == user.id)
            .values(password_hash=hash_password(password), updated_at=self.now)
        )
        await self._audit(conn, await self._tenants_of(conn, user.id), "user.reset", user, None,
                          {"password": "(new, shown once)"})  # fmt: skip
        await self._end_sessions(conn, user.id)
        return {"email": user.email, "password": password}

    async def _end_sessions(
        self, conn: AsyncConnection, user_id: uuid.UUID, tenant_id: uuid.UUID | None = None
    ) -> None:
        q = update(admin_session).where(
            admin_session.c.user_id == user_id, admin_session.c.revoked_at.is_(None)
        )
        if tenant_id is not None:
            q = q.where(admin_session.c.tenant_id == tenant_id)
        await conn.execute(q.values(revoked_at=self.now))
