"""FTP accounts: one virtual user per tenant (the user name is the tenant's name), its password stored as a
salted scrypt hash in ``tenant.ftp_password_hash``, and its folder tree created with the tenant."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..audit import SYSTEM, Actor, record
from ..config import Settings
from ..models import tenant
from ..tenant.errors import TenantNotFoundError
from .files import FileStore

# scrypt with n=2**14, r=8: about 30 ms and 16 MiB per check. The passwords are random 192-bit tokens, so this
# is defence in depth; verified logins are cached briefly, so a client reconnecting often does not pay it.
_N, _R, _P = 2**14, 8, 1


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


async def set_ftp_password(conn: AsyncConnection, tenant_id: uuid.UUID, now: datetime) -> str:
    password = generate_password()
    await conn.execute(
        update(tenant)
        .where(tenant.c.id == tenant_id)
        .values(ftp_password_hash=hash_password(password), updated_at=now)
    )
    return password


async def on_tenant_created(
    conn: AsyncConnection, settings: Settings, new: Any, now: datetime
) -> dict[str, Any]:
    """TENANT_CREATED hook: the tenant's FTP credentials (shown once) and its folder tree."""
    password = await set_ftp_password(conn, new.tenant_id, now)
    FileStore(settings.data_dir).ensure_tree(new.tenant_id)
    return {"ftpUser": new.name, "ftpPassword": password}


async def rotate_ftp_password(
    conn: AsyncConnection, settings: Settings, name: str, now: datetime, actor: Actor = SYSTEM
) -> dict[str, Any]:
    """A new FTP password for the tenant ``name``; the old one stops working once cached logins expire."""
    row = (await conn.execute(select(tenant.c.id, tenant.c.name).where(tenant.c.name == name))).first()
    if row is None:
        raise TenantNotFoundError(f"no tenant named {name!r}")
    password = await set_ftp_password(conn, row.id, now)
    await record(conn, row.id, actor, "ftp.rotate", "ftp_account", row.name, at=now,
                 before={"password": "(old)"}, after={"password": "(new, shown once)"})  # fmt: skip
    FileStore(settings.data_dir).ensure_tree(row.id)
    return {"name": row.name, "ftpUser": row.name, "ftpPassword": password}
