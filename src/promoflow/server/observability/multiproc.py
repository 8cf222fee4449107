"""prometheus-client's multiprocess mode for `promoflow api --workers N`.

Each API process writes its metrics into memory-mapped files of one directory; whichever process answers a scrape
merges them all. The directory is per run: `PROMETHEUS_MULTIPROC_DIR` when the operator sets it, otherwise
`<data dir>/metrics/run-<pid of the starting process>`. It is emptied when the run starts (files of an earlier
run would be counted again), directories of earlier runs whose process is gone are removed, and the files of a
process that died are marked (its live gauges dropped) — at a clean exit by the process itself, after a crash by
the next scrape. A single process (`serve`, `api` with one worker) keeps its metrics in memory and needs none.

prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` from the environment when it is imported, so the process
entry point calls `prepare` before it starts the API processes (they inherit the variable).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from ..config import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
_RUN = re.compile(r"^run-(\d+)$")
_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _empty(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for f in directory.glob("*.db"):
        f.unlink(missing_ok=True)


def prepare(settings: Settings, *, processes: int) -> Path | None:
    """Choose and empty this run's directory, and export it for the API processes; None for one process
    without an explicit directory (metrics in memory)."""
    explicit = settings.prometheus_multiproc_dir
    if explicit is not None:
        directory = Path(explicit)
    elif processes > 1:
        parent = settings.data_dir / "metrics"
        parent.mkdir(parents=True, exist_ok=True)
        for old in parent.iterdir():
            m = _RUN.match(old.name)
            if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                shutil.rmtree(old, ignore_errors=True)
        directory = parent / f"run-{os.getpid()}"
    else:
        return None
    _empty(directory)
    os.environ[ENV] = str(directory.resolve())
    return directory


def finish(directory: Path | None, settings: Settings) -> None:
    """At the end of the run: remove the directory this run made (an operator's own directory stays)."""
    if directory is not None and settings.prometheus_multiproc_dir is None:
        shutil.rmtree(directory, ignore_errors=True)


def active_dir() -> str | None:
    """The multiprocess directory this process writes to, if it runs in multiprocess mode."""
    from prometheus_client import values

    if getattr(values.ValueClass, "_multiprocess", False):
        return os.environ.get(ENV)
    return None


def mark_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that are gone (killed without their clean exit)."""
    from prometheus_client import multiprocess

    pids = set()
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            m = _LIVE_FILE.match(name)
            if m:
                pids.add(int(m.group(1)))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def mark_self_dead() -> None:
    """At a clean exit of a process in multiprocess mode."""
    directory = active_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), directory)
