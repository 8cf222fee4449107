"""Who made a change: the actor every audit entry names. Imports nothing from the features, so the tenant
context (`tenant.service.TenantContext.actor`) can carry it from the edge that knows the caller to the services
that record the change."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from enum import StrEnum


class ActorKind(StrEnum):
    USER = "user"  # someone signed in to the admin UI
    API_KEY = "api_key"  # a caller of the HTTP API
    FILE = "file"  # an uploaded file's import
    SYSTEM = "system"  # the operator's CLI, or the server itself


@dataclass(frozen=True)
class Actor:
    """``name`` is what the log shows (an e-mail, a key's name or prefix, a file name, "cli (user)");
    ``ref`` the id behind it (user id, API key id, import id) when there is one.

    ``itemised``: whether each change this actor makes gets its own entry. A file import's changes do not (a
    contact file may hold a million lines): the import records one ``import.apply`` entry with its counts, and the
    per-line detail is its line results."""

    kind: ActorKind
    name: str
    ref: str | None = None
    itemised: bool = True

    @classmethod
    def user(cls, email: str, user_id: object) -> Actor:
        return cls(ActorKind.USER, email, str(user_id))

    @classmethod
    def api_key(cls, label: str | None, prefix: str | None, key_id: object) -> Actor:
        name = label or (f"key {prefix}…" if prefix else f"key {str(key_id)[:8]}")
        return cls(ActorKind.API_KEY, name, str(key_id))

    @classmethod
    def file(cls, file_name: str, import_id: object) -> Actor:
        return cls(ActorKind.FILE, file_name, str(import_id), itemised=False)

    @classmethod
    def cli(cls) -> Actor:
        """The operator's `promoflow …` command, named by the OS account that ran it."""
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (some containers)
            who = ""
        return cls(ActorKind.SYSTEM, f"cli ({who})" if who else "cli")

    @property
    def label(self) -> str:
        """One line for pages and CSV: 'ada@example.com', 'till-12', 'contacts.xml (import 5f0c…)'."""
        if self.kind is ActorKind.FILE and self.ref:
            return f"{self.name} (import {self.ref})"
        return self.name


SYSTEM = Actor(ActorKind.SYSTEM, "system")
