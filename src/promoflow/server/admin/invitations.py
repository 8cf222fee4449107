"""Invitations: how a tenant's admin gives a person a role in their tenant from the Users page.

A user is global, keyed by e-mail, and one tenant's admin must learn nothing about other tenants: not whether an
address already has an account (it works for another tenant), and certainly not that account's password. Nor may
they attach an existing account to their tenant without its owner's say. So the Users page never touches an
account: it stores an invitation (address, role, the hash of a random code, 7 days) and shows the code once —
the same answer for any address. The invitation becomes a membership only when the person signs in with it:

- an address without an account: e-mail and the code; the account is made then, the code as its password (as a
  generated password always was: the admin who handed it over knows it);
- an address with an account: e-mail, that account's own password, and the code; nothing else about the account
  changes.

What remains knowable is what cannot be hidden without e-mail verification (promoflow sends no mail): whoever
holds a code can find out by trying it whether the address already had an account. Each such try is a sign-in
attempt on that address, refused and counted like any other.

`promoflow user create` (the operator, who runs the whole server) still makes accounts and memberships directly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..audit import SYSTEM, Actor, record
from ..exceptions import ConflictError, NotFoundError, PromoflowError
from ..models import admin_invitation, admin_membership, admin_user
from .passwords import generate_password, hash_password, verify_password
from .users import Role, parse_email, parse_role

VALID_FOR = timedelta(days=7)


@dataclass(frozen=True)
class Invitation:
    email: str
    role: Role
    expires_at: datetime
    expired: bool


@dataclass(frozen=True)
class NewInvitation:
    email: str
    role: Role
    code: str  # shown once, never stored
    expires_at: datetime


@dataclass(frozen=True)
class Joined:
    user_id: uuid.UUID
    tenant_id: uuid.UUID


class InvitationService:
    def __init__(self, now: datetime, actor: Actor = SYSTEM) -> None:
        self.now = now
        self.actor = actor

    # ------------------------------------------------------------------------------- the tenant's admin

    async def invite(
        self, conn: AsyncConnection, tenant_id: uuid.UUID, email: str, role: str
    ) -> NewInvitation:
        """Offer ``role`` in the tenant to ``email``, replacing a pending invitation to the same address (its
        code stops working). Refused only for someone who is a member of this tenant already."""
        address, r = parse_email(email), parse_role(role)
        member = await conn.scalar(
            select(admin_membership.c.role)
            .join(admin_user, admin_user.c.id == admin_membership.c.user_id)
            .where(admin_user.c.email == address, admin_membership.c.tenant_id == tenant_id)
        )
        if member is not None:
            raise ConflictError(
                f"{address} is already a {member} of this tenant; change their role in the list."
            )
        code = generate_password()
        expires = self.now + VALID_FOR
        await conn.execute(
            delete(admin_invitation).where(
                admin_invitation.c.tenant_id == tenant_id, admin_invitation.c.email == address
            )
        )
        await conn.execute(
            insert(admin_invitation).values(
                tenant_id=tenant_id, email=address, role=r.value, code_hash=hash_password(code),
                created_at=self.now, expires_at=expires,
            )
        )  # fmt: skip
        await record(conn, tenant_id, self.actor, "user.invite", "invitation", address, at=self.now,
                     after={"email": address, "role": r.value, "expiresAt": expires})  # fmt: skip
        return NewInvitation(address, r, code, expires)

    async def pending(self, conn: AsyncConnection, tenant_id: uuid.UUID) -> list[Invitation]:
        """The tenant's invitations not taken up (expired ones too, until withdrawn or sent again)."""
        rows = await conn.execute(
            select(admin_invitation.c.email, admin_invitation.c.role, admin_invitation.c.expires_at)
            .where(admin_invitation.c.tenant_id == tenant_id)
            .order_by(admin_invitation.c.email)
        )
        return [Invitation(r.email, Role(r.role), r.expires_at, r.expires_at <= self.now) for r in rows]

    async def withdraw(self, conn: AsyncConnection, tenant_id: uuid.UUID, email: str) -> str:
        try:
            address = parse_email(email)
        except PromoflowError as exc:
            raise NotFoundError("no such invitation in this tenant") from exc
        gone = await conn.execute(
            delete(admin_invitation)
            .where(admin_invitation.c.tenant_id == tenant_id, admin_invitation.c.email == address)
            .returning(admin_invitation.c.role)
        )
        role = gone.scalar()
        if role is None:
            raise NotFoundError("no such invitation in this tenant")
        await record(conn, tenant_id, self.actor, "user.withdraw", "invitation", address, at=self.now,
                     before={"email": address, "role": role})  # fmt: skip
        return address

    # ------------------------------------------------------------------------------------- at sign-in

    async def _matching(self, conn: AsyncConnection, email: str, code: str) -> Any:
        """The live invitation to ``email`` whose code ``code`` is, or None (at least one hash is checked, so an
        address without invitations takes as long as one with)."""
        rows = (
            await conn.execute(
                select(admin_invitation).where(
                    admin_invitation.c.email == email, admin_invitation.c.expires_at > self.now
                )
            )
        ).all()
        found = None
        for row in rows:
            if found is None and verify_password(row.code_hash, code):
                found = row
        if not rows:
            verify_password(None, code)
        return found

    async def _take(self, conn: AsyncConnection, row: Any) -> bool:
        # Whoever deletes it takes it: two sign-ins with one code at once make one membership.
        taken = await conn.execute(
            delete(admin_invitation).where(
                admin_invitation.c.tenant_id == row.tenant_id,
                admin_invitation.c.email == row.email,
                admin_invitation.c.code_hash == row.code_hash,
            )
        )
        return bool(taken.rowcount)

    async def join(
        self, conn: AsyncConnection, user_id: uuid.UUID, email: str, code: str
    ) -> uuid.UUID | None:
        """An account whose password was just checked takes up its invitation: the tenant it joined, or None."""
        row = await self._matching(conn, email, code)
        if row is None or not await self._take(conn, row):
            return None
        tenant_id: uuid.UUID = row.tenant_id
        member = await conn.scalar(
            select(admin_membership.c.role).where(
                admin_membership.c.user_id == user_id, admin_membership.c.tenant_id == tenant_id
            )
        )
        if member is None:  # (the operator may have added them meanwhile: then the invitation is simply used)
            await self._member(conn, user_id, email, row)
        return tenant_id

    async def open_account(self, conn: AsyncConnection, email: str, code: str) -> Joined | None:
        """An address without an account takes up its invitation: the account is made, the code its password."""
        row = await self._matching(conn, email, code)
        if row is None or not await self._take(conn, row):
            return None
        user_id = uuid.uuid4()
        await conn.execute(
            insert(admin_user).values(
                id=user_id, email=email, password_hash=row.code_hash,
                created_at=self.now, updated_at=self.now,
            )
        )  # fmt: skip
        await self._member(conn, user_id, email, row)
        return Joined(user_id, row.tenant_id)

    async def _member(self, conn: AsyncConnection, user_id: uuid.UUID, email: str, row: Any) -> None:
        tenant_id, role = row.tenant_id, row.role
        await conn.execute(
            insert(admin_membership).values(
                user_id=user_id, tenant_id=tenant_id, role=role, created_at=self.now
            )
        )
        # The same entry for a new account and an existing one: the log tells the admin no more than the page.
        await record(conn, tenant_id, Actor.user(email, user_id), "user.join", "user", user_id, at=self.now,
                     after={"email": email, "role": role})  # fmt: skip
