from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..features import Feature
from . import fastlane
from .bulk import BULK_ASSIGN, run_bulk_assign

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routers() -> Sequence[APIRouter]:
    from .api import router

    return [router]


FEATURE = Feature(
    name="promotion",
    routers=_routers,
    jobs={BULK_ASSIGN: run_bulk_assign},
    startup=[fastlane.start],
    shutdown=[fastlane.stop],
)
