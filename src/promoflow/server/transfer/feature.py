from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...wire.xml import FileKind
from ..features import Feature
from .export import PROMOTION_EXPORT_JOB, run_promotion_export, schedule_exports, sweep_files
from .importer import run_file_import
from .importers.contacts import ContactApplier
from .importers.promotions import PromotionApplier
from .importers.redemptions import RedemptionApplier
from .importers.transactions import TransactionApplier
from .inbox import FILE_IMPORT_JOB

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routers() -> Sequence[APIRouter]:
    from .api import router

    return [router]


FEATURE = Feature(
    name="transfer",
    routers=_routers,
    jobs={FILE_IMPORT_JOB: run_file_import, PROMOTION_EXPORT_JOB: run_promotion_export},
    appliers={
        FileKind.CONTACTS: ContactApplier,
        FileKind.PROMOTIONS: PromotionApplier,
        FileKind.REDEMPTIONS: RedemptionApplier,
        FileKind.TRANSACTIONS: TransactionApplier,
    },
    housekeeping=[schedule_exports, sweep_files],
)
