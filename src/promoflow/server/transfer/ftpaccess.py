"""Who may use the FTP server and what they may touch: tenant logins checked against the database (verified ones
cached for ``PROMOFLOW_FTP_AUTH_CACHE_SECONDS``), pyftpdlib's authorizer over them (permissions follow the folder
rules), and the file system view that confines a tenant to its own tree."""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import AbstractedFS
from sqlalchemy import select

from ..models import tenant
from .accounts import verify_password
from .bridge import DbBridge
from .files import KIND_BY_DIR, OUTPUT_DIRS, FileStore


@dataclass
class Logins:
    """Tenant logins checked against the database, verified ones cached for a short while."""

    bridge: DbBridge
    store: FileStore
    cache_seconds: float
    _cache: dict[str, tuple[str, uuid.UUID, float]] = field(default_factory=dict)
    _homes: dict[str, uuid.UUID] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, username: str, password: str) -> uuid.UUID | None:
        digest = hashlib.sha256(password.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(username)
        if hit is not None and hit[0] == digest and hit[2] > now:
            return hit[1]
        row = self.bridge.call(lambda db: _tenant_login(db, username))
        if row is None or not verify_password(password, row.ftp_password_hash):
            with self._lock:
                self._cache.pop(username, None)
            return None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[username] = (digest, row.id, now + self.cache_seconds)
            self._homes[username] = row.id
        return row.id  # type: ignore[no-any-return]

    def tenant_of(self, username: str) -> uuid.UUID:
        with self._lock:
            return self._homes[username]


async def _tenant_login(db: Any, username: str) -> Any:
    async with db.read() as conn:
        return (
            await conn.execute(
                select(tenant.c.id, tenant.c.ftp_password_hash).where(tenant.c.name == username)
            )
        ).first()


class TenantAuthorizer:
    """pyftpdlib's authorizer interface over the tenants table; permissions follow the folder rules."""

    def __init__(self, logins: Logins) -> None:
        self.logins = logins

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        if not username or self.logins.check(username, password) is None:
            raise AuthenticationFailed("Authentication failed.")

    def get_home_dir(self, username: str) -> str:
        tenant_id = self.logins.tenant_of(username)
        return str(self.logins.store.ensure_tree(tenant_id))

    def has_user(self, username: str) -> bool:
        return True  # every name may try; only a tenant with the right password gets in

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        if path is None:
            return perm in "elr"
        home = os.path.realpath(self.logins.store.tenant_root(self.logins.tenant_of(username)))
        real = os.path.realpath(path)
        if real != home and not real.startswith(home + os.sep):
            return False
        if perm in "elr":
            return True
        parent = "/" + posixpath.dirname(os.path.relpath(real, home).replace(os.sep, "/"))
        if perm == "w":
            return parent in KIND_BY_DIR
        if perm == "d":
            return parent in OUTPUT_DIRS
        return False

    def get_perms(self, username: str) -> str:
        return "elrwd"

    def get_msg_login(self, username: str) -> str:
        return f"Welcome, {username}."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        """Virtual users: the server process's own OS user does the file work."""

    def terminate_impersonation(self, username: str) -> None:
        """Nothing to undo."""


class ConfinedFS(AbstractedFS):  # type: ignore[misc]
    """The tenant's tree, with no way out: paths resolving outside it and paths through symlinks are invalid,
    symlinks are not listed, and files are opened without following links."""

    def validpath(self, path: str) -> bool:
        if not super().validpath(path):
            return False
        root = os.path.abspath(self.root)
        current = os.path.abspath(path)
        while current.startswith(root + os.sep):
            if os.path.islink(current):
                return False
            current = os.path.dirname(current)
        return True

    def listdir(self, path: str) -> list[str]:
        return [n for n in os.listdir(path) if not os.path.islink(os.path.join(path, n))]

    listdirinfo = listdir

    def open(self, filename: str, mode: str) -> Any:
        if "r" not in mode or "+" in mode:
            raise PermissionError("files are written by the server only")
        fd = os.open(filename, os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(fd, mode)
