"""Sign-in, server-side sessions and their CSRF tokens, and sign-in throttling.

The cookie carries a random 256-bit token; the database keeps its SHA-256 (``admin_session.id``), the user, the
tenant the session is working in, and the session's CSRF token. Signing out, disabling the user or resetting
their password revokes the row, so the cookie stops working at once on every process.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..audit import Actor
from ..models import admin_login_attempt, admin_membership, admin_session, admin_user, tenant
from ..tenant.service import TenantContext, context_from_row
from .invitations import InvitationService
from .passwords import hash_password, needs_rehash, verify_password
from .users import Role

MAX_AGE = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=5)
# Throttling: failed sign-ins counted over a sliding window, per account and per client address.
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Membership:
    tenant_id: uuid.UUID
    tenant_name: str
    role: Role


@dataclass(frozen=True)
class AdminContext:
    """Who is signed in, in which tenant, with which role: every admin page and action takes this."""

    session_id: str
    user_id: uuid.UUID
    email: str
    role: Role
    tenant: TenantContext
    csrf_token: str
    memberships: tuple[Membership, ...]

    def can(self, needed: Role) -> bool:
        return self.role.allows(needed)


class SessionRefused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class SessionStore:
    def __init__(self, now: datetime, idle: timedelta) -> None:
        self.now = now
        self.idle = idle

    async def _throttled(self, conn: AsyncConnection, email: str, address: str) -> bool:
        since = self.now - THROTTLE_WINDOW
        failed = admin_login_attempt.c.succeeded.is_(False)
        by_account = await conn.scalar(
            select(func.count()).where(
                admin_login_attempt.c.email == email, admin_login_attempt.c.at > since, failed
            )
        )
        if (by_account or 0) >= MAX_FAILURES_PER_ACCOUNT:
            return True
        by_address = await conn.scalar(
            select(func.count()).where(
                admin_login_attempt.c.address == address,
                admin_login_attempt.c.at > since,
                admin_login_attempt.c.at <= self.now,
                failed,
            )
        )
        return (by_address or 0) >= MAX_FAILURES_PER_ADDRESS

    async def sign_in(
        self, conn: AsyncConnection, email: str, password: str, address: str, user_agent: str | None,
        code: str = "",
    ) -> tuple[str, str] | None:  # fmt: skip
        """Check the password and open a session: answers (cookie token, session id), or None (the failed
        attempt is recorded in this transaction, so the caller must commit it). Says nothing about whether the
        account exists. Raises `SessionRefused` (429) while the account or the address is throttled.

        ``code`` takes up an invitation (`invitations`): with the account's password for an existing account, on
        its own (or typed as the password) for an address without one; the session opens in the tenant joined.
        A code that takes up nothing fails the sign-in like a wrong password."""
        email, code = email.strip().lower()[:255], code.strip()
        address = address[:64]
        if await self._throttled(conn, email, address):
            raise SessionRefused(
                "Too many failed sign-in attempts. Wait 15 minutes and try again, or ask an admin to reset your "
                "password.",
                status=429,
            )
        user = (await conn.execute(select(admin_user).where(admin_user.c.email == email))).first()
        invitations = InvitationService(self.now)
        user_id: uuid.UUID | None = None
        tenant_id: uuid.UUID | None = None
        if user is None:
            joined = await invitations.open_account(conn, email, code or password)
            if joined is not None:
                user_id, tenant_id = joined.user_id, joined.tenant_id
        elif verify_password(user.password_hash, password) and user.disabled_at is None:
            user_id = user.id
            if code:
                tenant_id = await invitations.join(conn, user.id, email, code)
            else:
                tenant_id = await conn.scalar(
                    select(admin_membership.c.tenant_id)
                    .join(tenant, tenant.c.id == admin_membership.c.tenant_id)
                    .where(admin_membership.c.user_id == user.id)
                    # The tenant they were in first: joining another one later never moves where they start.
                    .order_by(admin_membership.c.created_at, tenant.c.name)
                    .limit(1)
                )
        succeeded = user_id is not None and tenant_id is not None
        await conn.execute(
            insert(admin_login_attempt).values(email=email, address=address, at=self.now, succeeded=succeeded)
        )
        if user_id is None or tenant_id is None:
            return None
        if user is not None and needs_rehash(user.password_hash):
            await conn.execute(
                update(admin_user)
                .where(admin_user.c.id == user.id)
                .values(password_hash=hash_password(password))
            )
        token = secrets.token_urlsafe(32)
        sid = token_digest(token)
        await conn.execute(
            insert(admin_session).values(
                id=sid, user_id=user_id, tenant_id=tenant_id, csrf_token=secrets.token_urlsafe(32),
                address=address, user_agent=(user_agent or "")[:300] or None, created_at=self.now,
                last_seen_at=self.now, expires_at=self.now + MAX_AGE,
            )
        )  # fmt: skip
        return token, sid

    async def load(self, conn: AsyncConnection, token: str) -> tuple[AdminContext, bool] | None:
        """The live session the cookie names, or None; and whether its last-seen time is worth refreshing."""
        sid = token_digest(token)
        row = (
            await conn.execute(
                select(
                    admin_session.c.id.label("sid"),
                    admin_session.c.csrf_token,
                    admin_session.c.last_seen_at,
                    admin_user.c.id.label("uid"),
                    admin_user.c.email,
                    admin_membership.c.role,
                    tenant,
                )
                .join(admin_user, admin_user.c.id == admin_session.c.user_id)
                .join(
                    admin_membership,
                    and_(
                        admin_membership.c.user_id == admin_session.c.user_id,
                        admin_membership.c.tenant_id == admin_session.c.tenant_id,
                    ),
                )
                .join(tenant, tenant.c.id == admin_session.c.tenant_id)
                .where(
                    admin_session.c.id == sid,
                    admin_session.c.revoked_at.is_(None),
                    admin_session.c.expires_at > self.now,
                    admin_session.c.last_seen_at > self.now - self.idle,
                    admin_user.c.disabled_at.is_(None),
                )
            )
        ).first()
        if row is None:
            return None
        members = (
            await conn.execute(
                select(admin_membership.c.tenant_id, admin_membership.c.role, tenant.c.name)
                .join(tenant, tenant.c.id == admin_membership.c.tenant_id)
                .where(admin_membership.c.user_id == row.uid)
                .order_by(tenant.c.name)
            )
        ).all()
        ctx = AdminContext(
            session_id=row.sid,
            user_id=row.uid,
            email=row.email,
            role=Role(row.role),
            tenant=context_from_row(row, actor=Actor.user(row.email, row.uid)),
            csrf_token=row.csrf_token,
            memberships=tuple(Membership(m.tenant_id, m.name, Role(m.role)) for m in members),
        )
        return ctx, row.last_seen_at < self.now - TOUCH_EVERY

    async def touch(self, conn: AsyncConnection, sid: str) -> None:
        await conn.execute(
            update(admin_session).where(admin_session.c.id == sid).values(last_seen_at=self.now)
        )

    async def sign_out(self, conn: AsyncConnection, sid: str) -> None:
        await conn.execute(
            update(admin_session)
            .where(admin_session.c.id == sid, admin_session.c.revoked_at.is_(None))
            .values(revoked_at=self.now)
        )

    async def switch_tenant(self, conn: AsyncConnection, who: AdminContext, tenant_id: uuid.UUID) -> bool:
        """Work in another tenant the user belongs to; False when they do not belong to it."""
        if not any(m.tenant_id == tenant_id for m in who.memberships):
            return False
        await conn.execute(
            update(admin_session).where(admin_session.c.id == who.session_id).values(tenant_id=tenant_id)
        )
        return True
