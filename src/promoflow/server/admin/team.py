"""The Users section of Settings: `UserService` (what `promoflow user …` calls) seen from one tenant's admin.

A user is global (one person may work for several tenants) but an admin manages only their own tenant, so:
- adding a person is an invitation they take up by signing in with its code (`invitations`): the answer is the
  same whether or not the address has an account, and no account is joined without its owner;
- every action names a member of the signed-in tenant; anyone else is not found (404);
- disabling, enabling and resetting a password act on the person in every tenant, so they are allowed only when
  each of the person's tenants is one the admin administers (otherwise: remove them from this tenant);
- an admin cannot change their own role, disable, remove or reset themselves here, so a tenant always keeps at
  least one admin (the last admin can only be changed with `promoflow user …`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.timeutil import iso
from ..exceptions import BadRequestError, ConflictError, NotFoundError
from ..models import admin_membership, admin_user, tenant
from .invitations import Invitation, InvitationService, NewInvitation
from .sessions import AdminContext
from .users import Role, UserService, parse_email, parse_role


@dataclass(frozen=True)
class Member:
    email: str
    role: str
    disabled: bool
    since: str | None
    other_tenants: tuple[str, ...]
    unnamed_tenants: int
    is_self: bool
    manageable: (
        bool  # disable, enable and reset are allowed (every tenant of theirs is one the admin administers)
    )


class TeamService:
    def __init__(self, now: datetime, who: AdminContext) -> None:
        self.now = now
        self.who = who
        self.users = UserService(now, who.tenant.actor)
        self.invitations = InvitationService(now, who.tenant.actor)
        self._administered = {m.tenant_id for m in who.memberships if m.role is Role.ADMIN}

    async def _tenants_of(
        self, conn: AsyncConnection, user_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[Any]]:
        rows = await conn.execute(
            select(admin_membership.c.user_id, admin_membership.c.tenant_id, tenant.c.name)
            .join(tenant, tenant.c.id == admin_membership.c.tenant_id)
            .where(admin_membership.c.user_id.in_(user_ids))
        )
        out: dict[uuid.UUID, list[Any]] = {}
        for r in rows:
            out.setdefault(r.user_id, []).append(r)
        return out

    async def members(self, conn: AsyncConnection) -> list[Member]:
        rows = (
            await conn.execute(
                select(
                    admin_user.c.id,
                    admin_user.c.email,
                    admin_user.c.disabled_at,
                    admin_membership.c.role,
                    admin_membership.c.created_at,
                )
                .join(admin_membership, admin_membership.c.user_id == admin_user.c.id)
                .where(admin_membership.c.tenant_id == self.who.tenant.tenant_id)
                .order_by(admin_user.c.email)
            )  # fmt: skip
        ).all()
        tenants = await self._tenants_of(conn, [r.id for r in rows])
        tid = self.who.tenant.tenant_id
        mine = {m.tenant_id for m in self.who.memberships}
        return [
            Member(
                email=r.email,
                role=r.role,
                disabled=r.disabled_at is not None,
                since=iso(r.created_at, self.who.tenant.tz),
                # Only tenants this admin is in too are named: another tenant's name is that tenant's business.
                other_tenants=tuple(
                    sorted(t.name for t in tenants.get(r.id, []) if t.tenant_id in mine - {tid})
                ),
                unnamed_tenants=sum(t.tenant_id not in mine for t in tenants.get(r.id, [])),
                is_self=r.id == self.who.user_id,
                manageable=all(t.tenant_id in self._administered for t in tenants.get(r.id, [])),
            )
            for r in rows
        ]

    def _tenants_text(self, tenants: list[Any]) -> str:
        """'north, south and 2 other tenants': only the tenants this admin is a member of are named (as in the
        list); another tenant's name is that tenant's business."""
        mine = {m.tenant_id for m in self.who.memberships}
        named: list[str] = sorted(t.name for t in tenants if t.tenant_id in mine)
        others = len(tenants) - len(named)
        if others:
            named.append(f"{others} other tenant" + ("s" if others > 1 else ""))
        return ", ".join(named[:-1]) + " and " + named[-1] if len(named) > 1 else named[0]

    async def invite(self, conn: AsyncConnection, email: str, role: str) -> NewInvitation:
        """An invitation to this tenant, the same for any address (`invitations`): no account is made or joined
        until the person signs in with its code."""
        return await self.invitations.invite(conn, self.who.tenant.tenant_id, email, role)

    async def pending(self, conn: AsyncConnection) -> list[Invitation]:
        return await self.invitations.pending(conn, self.who.tenant.tenant_id)

    async def withdraw(self, conn: AsyncConnection, email: str) -> str:
        address = await self.invitations.withdraw(conn, self.who.tenant.tenant_id, email)
        return f"The invitation to {address} is withdrawn; its code no longer works."

    async def _member(self, conn: AsyncConnection, email: str) -> Any:
        try:
            address = parse_email(email)
        except Exception as exc:
            raise NotFoundError("no such user in this tenant") from exc
        row = (
            await conn.execute(
                select(admin_user.c.id, admin_user.c.email)
                .join(admin_membership, admin_membership.c.user_id == admin_user.c.id)
                .where(
                    admin_user.c.email == address, admin_membership.c.tenant_id == self.who.tenant.tenant_id
                )
            )
        ).first()
        if row is None:
            raise NotFoundError("no such user in this tenant")
        return row

    async def act(
        self, conn: AsyncConnection, action: str, email: str, role: str = ""
    ) -> str | dict[str, Any]:
        """One action on a member: a sentence saying what was done, or (reset) the new password."""
        row = await self._member(conn, email)
        name = self.who.tenant.name
        if row.id == self.who.user_id:
            raise BadRequestError(
                "You cannot change, disable, remove or reset your own account here (so the tenant keeps an admin); "
                "ask another admin."
            )
        if action == "role":
            r = parse_role(role)
            await self.users.set_role(conn, row.email, name, r.value)
            return f"{row.email} is now {r.value}."
        if action == "remove":
            await self.users.remove(conn, row.email, name)
            return f"{row.email} no longer belongs to {name}; their sessions here have ended."
        if action not in ("disable", "enable", "reset"):
            raise NotFoundError("no such action")
        theirs = (await self._tenants_of(conn, [row.id])).get(row.id, [])
        foreign = [t for t in theirs if t.tenant_id not in self._administered]
        if foreign:
            raise ConflictError(
                f"{row.email} also works for {self._tenants_text(foreign)}, which you do not administer: "
                "disabling or resetting them would act there too. Remove them from this tenant instead."
            )
        if action == "disable":
            await self.users.disable(conn, row.email)
            return f"{row.email} is disabled; their sessions have ended."
        if action == "enable":
            await self.users.enable(conn, row.email)
            return f"{row.email} can sign in again."
        return await self.users.reset_password(conn, row.email)
