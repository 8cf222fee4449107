"""The outbox's vocabulary: intents, their kinds and states, the allowed transitions, and what the file name of
an intent encodes (its sale's token, its default idempotency key, its creation order)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from promoflow.client._contacts import normalize_key
from promoflow.wire.xml import (
    IMPORT_DIRS,
    FileKind,
    Record,
    read_contacts,
    read_redemptions,
    read_transactions,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "FILE_KINDS",
    "Intent",
    "IntentKind",
    "IntentState",
    "InvalidTransition",
    "OutboxStatus",
    "RecoveryReport",
    "creation_order",
    "default_key",
    "group_token",
    "read_records_of",
    "utc_now",
]


class IntentKind(StrEnum):
    """What an intent changes on the server."""

    REDEMPTION = "redemption"
    CONTACT_CREATE = "contactCreate"
    CONTACT_UPDATE = "contactUpdate"
    RECEIPT = "receipt"


FILE_KINDS = {
    IntentKind.REDEMPTION: FileKind.REDEMPTIONS,
    IntentKind.CONTACT_CREATE: FileKind.CONTACTS,
    IntentKind.CONTACT_UPDATE: FileKind.CONTACTS,
    IntentKind.RECEIPT: FileKind.TRANSACTIONS,
}


class IntentState(StrEnum):
    """Where an intent is on its way to the server (the name of the folder holding its XML file)."""

    PENDING = "pending"
    QUEUED = "queued"
    UPLOADED = "uploaded"
    DONE = "done"
    SETTLED = "settled"
    DEAD = "dead"


ALLOWED_TRANSITIONS: dict[IntentState, frozenset[IntentState]] = {
    IntentState.PENDING: frozenset(
        {IntentState.PENDING, IntentState.QUEUED, IntentState.DONE, IntentState.SETTLED, IntentState.DEAD}
    ),
    IntentState.QUEUED: frozenset(
        {IntentState.QUEUED, IntentState.UPLOADED, IntentState.DONE, IntentState.SETTLED, IntentState.DEAD}
    ),
    IntentState.UPLOADED: frozenset(
        {IntentState.UPLOADED, IntentState.QUEUED, IntentState.DONE, IntentState.SETTLED, IntentState.DEAD}
    ),
    # Terminal states only change their sidecar (acknowledgement); a dead letter may be queued again by hand.
    IntentState.DONE: frozenset({IntentState.DONE}),
    IntentState.SETTLED: frozenset({IntentState.SETTLED}),
    IntentState.DEAD: frozenset({IntentState.DEAD, IntentState.QUEUED}),
}


class InvalidTransition(RuntimeError):
    """A state change the outbox does not allow (e.g. out of ``done``), or on an intent not held."""


@dataclass(frozen=True, slots=True)
class Intent:
    """One state change on its way to the server: the XML file ``<id>.xml`` and its sidecar."""

    id: str
    kind: IntentKind
    state: IntentState
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    group: str | None = None
    contact_key: tuple[str, str] | None = None
    """For contact changes: the (key type, value) the till knows the contact by, e.g. ``("email", "a@b.se")``
    (a create is looked up by it; an update without a GUID is delivered by it)."""
    contact_id: str | None = None
    """For contact updates: the contact's GUID, when the till knows it."""
    attempts: int = 0
    """Settlement attempts recorded so far (online tries and uploads)."""
    verdict: str | None = None
    """How it was settled: ``applied``, ``duplicate``, ``conflictAlreadyRedeemed``, ``expired``, ``notFound``,
    ``invalid`` (the A13 verdicts, also used for answers of the API), or ``rejected`` for a dead letter."""
    reason: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    acknowledged: bool = False

    @property
    def file_name(self) -> str:
        return f"{self.id}.xml"

    @property
    def contact_marks(self) -> frozenset[str]:
        """How this intent names its contact (GUID, key), for ordering the changes of one contact: two
        contact intents concern the same contact when they share a mark. Empty for other kinds."""
        if self.kind not in (IntentKind.CONTACT_CREATE, IntentKind.CONTACT_UPDATE):
            return frozenset()
        marks: set[str] = set()
        if self.contact_id:
            marks.add(f"id:{self.contact_id.strip().lower()}")
        if self.contact_key:
            kind, value = normalize_key(*self.contact_key)
            marks.add(f"key:{kind}:{value}")
        return frozenset(marks)

    @property
    def file_kind(self) -> FileKind:
        return FILE_KINDS[self.kind]

    @property
    def remote_folder(self) -> str:
        """The FTP folder this file is uploaded to (``/integration/…Import``)."""
        return IMPORT_DIRS[self.file_kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "state": self.state.value,
            "idempotencyKey": self.idempotency_key,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
            "group": self.group,
            "contactKey": list(self.contact_key) if self.contact_key else None,
            "contactId": self.contact_id,
            "attempts": self.attempts,
            "verdict": self.verdict,
            "reason": self.reason,
            "detail": dict(self.detail),
            "acknowledged": self.acknowledged,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], state: IntentState) -> Intent:
        key = data.get("contactKey")
        return cls(
            id=str(data["id"]),
            kind=IntentKind(data["kind"]),
            state=state,
            idempotency_key=str(data["idempotencyKey"]),
            created_at=datetime.fromisoformat(data["createdAt"]),
            updated_at=datetime.fromisoformat(data["updatedAt"]),
            group=data.get("group"),
            contact_key=(str(key[0]), str(key[1])) if key else None,
            contact_id=data.get("contactId"),
            attempts=int(data.get("attempts", 0)),
            verdict=data.get("verdict"),
            reason=data.get("reason"),
            detail=dict(data.get("detail") or {}),
            acknowledged=bool(data.get("acknowledged", False)),
        )


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """Counts per state and the intents that need the POS's attention (settled or dead, unacknowledged)."""

    directory: str
    counts: Mapping[IntentState, int]
    attention: tuple[Intent, ...]

    @property
    def undelivered(self) -> int:
        """Intents not yet settled by the server (pending, queued or uploaded)."""
        return sum(
            self.counts.get(s, 0) for s in (IntentState.PENDING, IntentState.QUEUED, IntentState.UPLOADED)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "counts": {state.value: self.counts.get(state, 0) for state in IntentState},
            "undelivered": self.undelivered,
            "attention": [intent.to_json() for intent in self.attention],
        }


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`Outbox.recover` found: intents of uncommitted groups it discarded, pending intents left to
    settle, and garbage it removed."""

    discarded: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    removed_files: int = 0


def utc_now() -> datetime:
    return datetime.now(UTC)


def read_records_of(kind: IntentKind, data: bytes) -> list[Any]:
    reader = {
        IntentKind.REDEMPTION: read_redemptions,
        IntentKind.RECEIPT: read_transactions,
        IntentKind.CONTACT_CREATE: read_contacts,
        IntentKind.CONTACT_UPDATE: read_contacts,
    }[kind]
    values: list[Any] = []
    for item in reader(data):
        if not isinstance(item, Record):
            raise ValueError(f"the {kind.value} record is not valid: {item.reason}")
        values.append(item.value)
    return values


def group_token(group: str) -> str:
    """The short mark of a group in its intents' file names (``g`` and 8 hex digits of a hash)."""
    return "g" + hashlib.sha256(group.encode()).hexdigest()[:8]


def default_key(intent_id: str) -> str:
    """The idempotency key of an intent that was given none: derived from its (unique) id."""
    return f"pf-{intent_id}"


def creation_order(intent_id: str) -> tuple[str, str]:
    # YYYYMMDDHHmmss_[<sender>-]<usec>-<rand>_<type>: the microsecond counter orders intents of one outbox.
    middle = intent_id.split("_", 1)[-1].rsplit("_", 1)[0]
    pieces = middle.rsplit("-", 2)
    return (pieces[-2] if len(pieces) >= 2 else "", intent_id)
