"""People who sign in to the admin web UI, their role in each tenant, their server-side sessions and sign-in
attempts (for throttling).

A user is not a tenant's row: one person may work for several tenants (an agency, a chain's head office), so
``admin_user`` is global and ``admin_membership`` says which tenants they belong to and with which role. Every
session is bound to one tenant at a time; every page reads only that tenant's rows.
"""

from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Index, String, Table, Uuid

from .base import BigId, UTCDateTime, created_at, metadata, tenant_fk, updated_at

admin_user = Table(
    "admin_user",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(255), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
    created_at(),
    updated_at(),
)

admin_membership = Table(
    "admin_membership",
    metadata,
    Column("user_id", Uuid, ForeignKey("admin_user.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(20), nullable=False),
    created_at(),
    CheckConstraint("role in ('viewer', 'marketer', 'admin')", name="role"),
    Index("ix_admin_membership_tenant", "tenant_id"),
)

admin_invitation = Table(
    "admin_invitation",
    metadata,
    # A role in a tenant offered to an e-mail address: it becomes a membership only when the person signs in with
    # its code (and, if the address has an account, that account's password). Until then nothing about an
    # existing account changes, and the tenant's admin sees the same invitation whether or not one exists.
    Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
    Column("email", String(255), primary_key=True),
    Column("role", String(20), nullable=False),
    # Argon2id of the code, which is shown once to the inviting admin; a new account takes it as its password.
    Column("code_hash", String(200), nullable=False),
    created_at(),
    Column("expires_at", UTCDateTime, nullable=False),
    CheckConstraint("role in ('viewer', 'marketer', 'admin')", name="role"),
    Index("ix_admin_invitation_email", "email"),
)

admin_session = Table(
    "admin_session",
    metadata,
    # SHA-256 of the cookie's token: a stolen database gives no usable session.
    Column("id", String(64), primary_key=True),
    Column("user_id", Uuid, ForeignKey("admin_user.id", ondelete="CASCADE"), nullable=False),
    tenant_fk(),
    Column("csrf_token", String(64), nullable=False),
    Column("address", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
    created_at(),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_admin_session_user", "user_id"),
)

admin_login_attempt = Table(
    "admin_login_attempt",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("email", String(255), nullable=False),
    Column("address", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("succeeded", Boolean, nullable=False),
    Index("ix_admin_login_attempt_email", "email", "at"),
    Index("ix_admin_login_attempt_address", "address", "at"),
)

__all__ = ["admin_invitation", "admin_login_attempt", "admin_membership", "admin_session", "admin_user"]
