"""The feature packages the app is made of. A new feature adds its router (and start/stop hooks) here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter

if TYPE_CHECKING:
    from .edge import AppState

STARTUP: list[Callable[[AppState], Awaitable[None]]] = []
SHUTDOWN: list[Callable[[AppState], Awaitable[None]]] = []


def routers() -> list[APIRouter]:
    from .admin.router import router as admin
    from .contact.api import router as contacts
    from .health.api import router as health
    from .promotion import bulk  # noqa: F401  (registers the bulk-assignment job handler)
    from .promotion.api import router as promotions
    from .receipt.api import router as receipts
    from .transfer.api import router as imports

    return [health, contacts, promotions, receipts, imports, admin()]
