"""Looking at a database that other processes are writing to."""

from __future__ import annotations

from sqlalchemy import Engine

from promoflow.server.db import make_sync_engine


def read_engine(url: str) -> Engine:
    """An engine for looking while server or worker processes write: on SQLite its transactions begin DEFERRED
    (a WAL reader never waits), where `make_sync_engine`'s begin IMMEDIATE and queue for the write lock — polled
    in a loop, that starves (and is starved by) a worker committing batch after batch."""
    return make_sync_engine(url).execution_options(sqlite_begin="DEFERRED")
