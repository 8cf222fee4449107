"""What the server is made of: one list of features, each declaring its routes, job handlers, file appliers,
in-transaction hooks, housekeeping and start/stop steps. The app factory and the worker both take this list
(`compose`); nothing registers itself by being imported.

A feature's routes are built lazily (``routers``), so a worker process never imports the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    from ..wire.xml import FileKind
    from .hooks import ContactChanged, PromotionsShown
    from .http.edge import AppState
    from .transfer.importer import ApplierFactory
    from .worker.runner import Handler, Housekeeping

Lifecycle = Callable[["AppState"], Awaitable[None]]


def _no_routers() -> Sequence[APIRouter]:
    return ()


@dataclass(frozen=True)
class Feature:
    name: str
    routers: Callable[[], Sequence[APIRouter]] = _no_routers
    jobs: Mapping[str, Handler] = field(default_factory=dict)
    appliers: Mapping[FileKind, ApplierFactory] = field(default_factory=dict)
    housekeeping: Sequence[Housekeeping] = ()
    contact_changed: Sequence[ContactChanged] = ()
    promotions_shown: Sequence[PromotionsShown] = ()
    startup: Sequence[Lifecycle] = ()
    shutdown: Sequence[Lifecycle] = ()


@dataclass(frozen=True)
class Composition:
    """The features resolved into what each runtime needs."""

    features: tuple[Feature, ...]
    jobs: Mapping[str, Handler]
    appliers: Mapping[FileKind, ApplierFactory]
    housekeeping: tuple[Housekeeping, ...]
    contact_changed: tuple[ContactChanged, ...]
    promotions_shown: tuple[PromotionsShown, ...]
    startup: tuple[Lifecycle, ...]
    shutdown: tuple[Lifecycle, ...]

    def routers(self) -> list[APIRouter]:
        return [router for f in self.features for router in f.routers()]


def compose(features: Sequence[Feature]) -> Composition:
    jobs: dict[str, Any] = {}
    appliers: dict[Any, Any] = {}
    for f in features:
        for kind, fn in f.jobs.items():
            if kind in jobs:
                raise ValueError(f"job kind {kind!r} is declared by two features")
            jobs[kind] = fn
        for file_kind, factory in f.appliers.items():
            if file_kind in appliers:
                raise ValueError(f"file kind {file_kind!r} has two appliers")
            appliers[file_kind] = factory
    return Composition(
        features=tuple(features),
        jobs=jobs,
        appliers=appliers,
        housekeeping=tuple(t for f in features for t in f.housekeeping),
        contact_changed=tuple(h for f in features for h in f.contact_changed),
        promotions_shown=tuple(h for f in features for h in f.promotions_shown),
        startup=tuple(s for f in features for s in f.startup),
        # Stopped in reverse order of starting.
        shutdown=tuple(s for f in reversed(features) for s in f.shutdown),
    )


def default_features() -> list[Feature]:
    """Every feature of the server, in the order their routes are mounted."""
    from .admin.feature import FEATURE as admin
    from .contact.feature import FEATURE as contact
    from .health.feature import FEATURE as health
    from .observability.feature import FEATURE as observability
    from .promotion.feature import FEATURE as promotion
    from .receipt.feature import FEATURE as receipt
    from .retention.feature import FEATURE as retention
    from .tenant.feature import FEATURE as tenant
    from .transfer.feature import FEATURE as transfer

    return [health, observability, tenant, contact, promotion, receipt, transfer, admin, retention]


def default_composition() -> Composition:
    return compose(default_features())
