"""Durable file operations for the outbox: nothing written here is ever seen half-written or lost on a crash.

Every write goes to a temporary file in the destination folder (``.<name>.tmp``), is fsync'd, renamed over the
final name (atomic on POSIX file systems) and the folder is fsync'd, so the rename itself survives a power
loss. Moves between folders rename and then fsync both folders.

The system calls are reached through module-level names (``_replace``, ``_fsync``, ``_unlink``) so the
outbox's crash tests can make any one of them fail, as a crash at that instant would.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:  # POSIX: advisory locks that die with the process (a SIGKILL releases them)
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows: one process per outbox, no cross-process claims
    _fcntl = None  # type: ignore[assignment]

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"

_replace = os.replace
_fsync = os.fsync
_unlink = os.unlink


def tmp_name(name: str) -> str:
    return f"{TMP_PREFIX}{name}{TMP_SUFFIX}"


def is_tmp(name: str) -> bool:
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def write_file(folder: Path, name: str, data: bytes, *, durable: bool = True, sync_dir: bool = True) -> Path:
    """Write ``folder/name`` atomically: temp file in ``folder``, write, fsync, rename, fsync ``folder``.

    ``sync_dir=False`` leaves the folder fsync to the caller (who batches several renames into one).
    """
    final = folder / name
    tmp = folder / tmp_name(name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            _fsync(fd)
    finally:
        os.close(fd)
    try:
        _replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable and sync_dir:
        fsync_dir(folder)
    return final


def write_file_locked(folder: Path, name: str, data: bytes, *, durable: bool = True) -> tuple[Path, int]:
    """Like :func:`write_file`, but the file is locked (see :func:`try_lock`) *before* it appears under its
    final name, and stays locked: the open descriptor is returned with the path. Nobody else can claim the
    file between its appearance and the caller's release."""
    final = folder / name
    tmp = folder / tmp_name(name)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if _fcntl is not None:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            _fsync(fd)
        _replace(tmp, final)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        try:
            fsync_dir(folder)
        except BaseException:
            os.close(fd)
            raise
    return final, fd


def move(src: Path, dest: Path, *, durable: bool = True) -> None:
    """Rename ``src`` to ``dest`` (same file system) and make the rename durable in both folders."""
    _replace(src, dest)
    if durable:
        fsync_dir(dest.parent)
        if src.parent != dest.parent:
            fsync_dir(src.parent)


def remove(path: Path, *, durable: bool = False) -> bool:
    """Delete ``path`` if it exists; True when it did."""
    try:
        _unlink(path)
    except FileNotFoundError:
        return False
    if durable:
        fsync_dir(path.parent)
    return True


def try_lock(path: Path) -> int | None:
    """Open ``path`` and take an exclusive, non-blocking advisory lock on it: the open descriptor, or None
    when another holder (any process, or another descriptor of this one) has it, or the file is gone.

    The lock belongs to the file (inode), not its name: it stays valid while the file is renamed between
    folders, and the kernel drops it when the descriptor is closed or the process dies.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    if _fcntl is None:  # pragma: no cover - no cross-process locking available
        return fd
    try:
        _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def lock_blocking(path: Path, timeout: float | None = None) -> int | None:
    """An exclusive lock on ``path`` (created if missing), waiting up to ``timeout`` seconds (None: forever)."""
    import time

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if _fcntl is None:  # pragma: no cover
        return fd
    if timeout is None:
        _fcntl.flock(fd, _fcntl.LOCK_EX)
        return fd
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            # Bounded polling on another process's lock: flock has no timed wait.
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def same_file(fd: int, path: Path) -> bool:
    """Whether the open descriptor ``fd`` is still the file at ``path`` (not moved away meanwhile)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
