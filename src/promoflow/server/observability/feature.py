"""The observability feature: /metrics and the per-process sampler (the request metrics are an ASGI layer the app
factory adds, `observability.http`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..features import Feature

if TYPE_CHECKING:
    from fastapi import APIRouter

    from ..http.edge import AppState


def _routers() -> Sequence[APIRouter]:
    from .api import router

    return [router]


async def start(state: AppState) -> None:
    if not state.settings.metrics_enabled:
        return
    from .collect import STATE_KEY, Observability

    obs = Observability(state)
    state.extras[STATE_KEY] = obs
    obs.start()


async def stop(state: AppState) -> None:
    from .collect import STATE_KEY
    from .multiproc import mark_self_dead

    obs = state.extras.pop(STATE_KEY, None)
    if obs is not None:
        await obs.stop()
        mark_self_dead()


FEATURE = Feature(name="observability", routers=_routers, startup=[start], shutdown=[stop])
