"""The admin web UI as a feature: its routes only (it enqueues the promotion feature's bulk-assignment job)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..features import Feature

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routers() -> Sequence[APIRouter]:
    from .router import router

    return [router()]


FEATURE = Feature(name="admin", routers=_routers)
