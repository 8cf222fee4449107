"""What the promotion services answer: typed domain values, no wire names (the presenter turns them into Engage's
models)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class PromotionFace:
    """What every assignment of one promotion shows alike (immutable once the promotion is activated)."""

    promotion_id: uuid.UUID
    external_id: str | None
    name: str
    heading: str | None
    description: str | None
    image_url: str | None
    link: str | None
    channels: tuple[dict[str, Any], ...]  # as stored: {type, valueType, value, localValues, instruction}

    @classmethod
    def of(cls, row: Any) -> PromotionFace:
        """From a row with the promotion's columns (``promotion_id`` for its id)."""
        return cls(row.promotion_id, row.external_id, row.name, row.heading, row.description, row.image_url,
                   row.link, tuple(row.channels))  # fmt: skip


@dataclass(frozen=True)
class AssignmentView:
    """One assignment of a promotion to a contact, as a contact's promotion item shows it."""

    id: uuid.UUID
    promotion: PromotionFace
    valid_from: datetime
    valid_to: datetime | None
    redeemed_at: datetime | None

    @classmethod
    def of(cls, row: Any, face: PromotionFace | None = None) -> AssignmentView:
        return cls(row.id, face or PromotionFace.of(row), row.valid_from, row.valid_to, row.redeemed_at)


@dataclass(frozen=True)
class Promotion:
    """A promotion definition. ``status`` is derived (rules.status_of) where it is presented."""

    id: uuid.UUID
    external_id: str | None
    name: str
    start_date: date
    end_date: date | None
    assigned_unit: str | None
    assigned_amount: int | None
    heading: str | None
    description: str | None
    link: str | None
    image_url: str | None
    channels: tuple[dict[str, Any], ...]
    return_policy: str
    activated_at: datetime | None
    deactivated_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> Promotion:
        return cls(row.id, row.external_id, row.name, row.start_date, row.end_date, row.assigned_unit,
                   row.assigned_amount, row.heading, row.description, row.link, row.image_url, tuple(row.channels),
                   row.return_policy, row.activated_at, row.deactivated_at, row.created_at, row.updated_at)  # fmt: skip


@dataclass(frozen=True)
class PromotionPage:
    """A page of promotion definitions (the list extension)."""

    items: tuple[Promotion, ...]
    total: int
    offset: int
