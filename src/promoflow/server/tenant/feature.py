"""Tenants as a feature: the API-key extension's routes, and the background writer of each key's last use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..features import Feature
from .keys import KeyUsage

if TYPE_CHECKING:
    from fastapi import APIRouter

    from ..http.edge import AppState


def _routers() -> Sequence[APIRouter]:
    from .api import router

    return [router]


async def start_key_usage(st: AppState) -> None:
    usage = KeyUsage(st.db, st.clock, every=st.settings.api_key_last_used_seconds)
    usage.start()
    st.key_usage = usage


async def stop_key_usage(st: AppState) -> None:
    if st.key_usage is not None:
        await st.key_usage.stop()


FEATURE = Feature(name="tenant", routers=_routers, startup=[start_key_usage], shutdown=[stop_key_usage])
