"""The settings of this process, for the transfer code the core runs without settings: job handlers and
housekeeping (``HOUSEKEEPING`` tasks get only the database and the time). The app's startup sets them; the
scheduled export runs only in processes started as a server (`promoflow serve`, `promoflow worker`), which turn it
on explicitly — an app or worker built in a test never exports on its own."""

from __future__ import annotations

from ..config import Settings

_current: Settings | None = None
_schedule = False


def configure(settings: Settings, *, schedule: bool | None = None) -> None:
    global _current, _schedule
    _current = settings
    if schedule is not None:
        _schedule = schedule


def settings() -> Settings:
    global _current
    if _current is None:
        _current = Settings()
    return _current


def scheduling() -> bool:
    return _schedule
