"""The local cache of contact GUIDs: one SQLite file, so a returning customer costs no look-up call.

Engage returns no GUID for a contact created by file (and none while the API is down), so the cache also
remembers keys whose contact was created through the outbox: the next identification of that customer looks
the GUID up and saves it here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from promoflow.client import _durable

__all__ = ["ContactCache", "normalize_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contact_key (
    key_type   TEXT NOT NULL,
    key_value  TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    saved_at   TEXT NOT NULL,
    PRIMARY KEY (key_type, key_value)
);
CREATE TABLE IF NOT EXISTS contact_created_offline (
    key_type   TEXT NOT NULL,
    key_value  TEXT NOT NULL,
    intent_id  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (key_type, key_value)
);
"""


def normalize_key(key_type: str, value: str) -> tuple[str, str]:
    """Key types compare case-insensitively; e-mail addresses too, other values after trimming."""
    kind = key_type.strip()
    text = value.strip()
    if kind.lower() == "email":
        text = text.lower()
    return kind.lower(), text


class ContactCache:
    """Contact GUIDs by key (``email``, ``mobilePhone``, ``memberNumber``, …) in the SQLite file ``path``.

    Safe to share between threads. Losing the file loses nothing but look-ups: it is a cache.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            # Turning a new file to WAL and creating the tables take a read lock and then a write lock. Two
            # processes doing that at once can each hold the first while waiting for the second, and SQLite
            # answers such a deadlock with "database is locked" at once instead of waiting its busy timeout.
            # So one process at a time sets the file up, under a lock file beside it (milliseconds).
            setup = _durable.lock_blocking(Path(f"{self.path}.lock"))
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
            finally:
                if setup is not None:
                    _durable.unlock(setup)
            self._db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ContactCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key_type: str, value: str) -> str | None:
        """The cached GUID for this key, or None."""
        kind, text = normalize_key(key_type, value)
        with self._lock:
            row = self._db.execute(
                "SELECT contact_id FROM contact_key WHERE key_type = ? AND key_value = ?", (kind, text)
            ).fetchone()
        return None if row is None else str(row[0])

    def save(self, key_type: str, value: str, contact_id: str) -> None:
        """Remember the GUID of a key (and forget that it was created offline)."""
        kind, text = normalize_key(key_type, value)
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO contact_key (key_type, key_value, contact_id, saved_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key_type, key_value) DO UPDATE SET contact_id = excluded.contact_id, "
                    "saved_at = excluded.saved_at",
                    (kind, text, contact_id.lower(), now),
                )
                self._db.execute(
                    "DELETE FROM contact_created_offline WHERE key_type = ? AND key_value = ?", (kind, text)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def forget(self, key_type: str, value: str) -> None:
        """Drop a key (e.g. the server no longer knows its contact)."""
        kind, text = normalize_key(key_type, value)
        with self._lock:
            self._db.execute("DELETE FROM contact_key WHERE key_type = ? AND key_value = ?", (kind, text))

    def created_offline(self, key_type: str, value: str, intent_id: str) -> None:
        """Note that a contact with this key was created through the outbox (its GUID is not known yet)."""
        kind, text = normalize_key(key_type, value)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO contact_created_offline (key_type, key_value, intent_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (kind, text, intent_id, datetime.now(UTC).isoformat()),
            )

    def pending_create(self, key_type: str, value: str) -> str | None:
        """The outbox intent that created a contact with this key while its GUID is unknown, or None."""
        kind, text = normalize_key(key_type, value)
        with self._lock:
            row = self._db.execute(
                "SELECT intent_id FROM contact_created_offline WHERE key_type = ? AND key_value = ?",
                (kind, text),
            ).fetchone()
        return None if row is None else str(row[0])

    def count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM contact_key").fetchone()
        return int(row[0])
