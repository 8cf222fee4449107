"""The admin web UI as a feature: its routes, and the Reports page's snapshot job (it also enqueues the promotion
feature's bulk-assignment job)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..features import Feature
from .snapshots import REPORT_SNAPSHOT, run_report_snapshot

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routers() -> Sequence[APIRouter]:
    from .router import router

    return [router()]


FEATURE = Feature(name="admin", routers=_routers, jobs={REPORT_SNAPSHOT: run_report_snapshot})
