from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..features import Feature
from . import pending, shown

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routers() -> Sequence[APIRouter]:
    from .api import router

    return [router]


FEATURE = Feature(
    name="receipt",
    routers=_routers,
    contact_changed=[pending.match_pending],
    promotions_shown=[shown.record_shown],
    startup=[shown.start_buffer],
    shutdown=[shown.stop_buffer],
)
