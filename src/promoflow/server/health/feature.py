from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..features import Feature

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routers() -> Sequence[APIRouter]:
    from .api import router

    return [router]


FEATURE = Feature(name="health", routers=_routers)
