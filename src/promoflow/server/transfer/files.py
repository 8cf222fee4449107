"""Where transfer files live, and writing them so that no reader ever sees half a file.

Layout under the data dir (one file system, so every move is an atomic rename):

- ``ftp/<tenant id>/integration/…``: the tenant's FTP tree (A13 folders); the FTP user is chrooted here.
- ``transfer/staging/<tenant id>/``: uploads in progress; outside every FTP tree, so no client and no importer
  sees a partial file.
- ``transfer/inbox/<tenant id>/<import id>.xml``: accepted uploads waiting for (or being read by) the importer.
- ``transfer/tmp/``: files being written (results, exports) before their rename into a tenant's tree.

The tenant's folder is named by its id, not its name: a name is free text and must never become a path.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ...wire.xml import (
    IMPORT_DIRS,
    IMPORT_RESULTS_DIR,
    PROCESSED_DIR,
    PROMOTION_EXPORT_DIR,
    FileKind,
)

TREE = (*IMPORT_DIRS.values(), PROMOTION_EXPORT_DIR, IMPORT_RESULTS_DIR, PROCESSED_DIR)
"""Every folder of a tenant's FTP tree (FTP paths)."""

KIND_BY_DIR: dict[str, FileKind] = {folder: kind for kind, folder in IMPORT_DIRS.items()}
"""Upload folder (FTP path) → the kind of file it takes."""

OUTPUT_DIRS = (IMPORT_RESULTS_DIR, PROCESSED_DIR, PROMOTION_EXPORT_DIR)
"""Folders the server writes into; the tenant may read and delete there, never upload."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """Paths and durable file operations of the transfer feature, rooted at the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.base = Path(data_dir).resolve()

    # ------------------------------------------------------------------------------------------- paths

    def tenant_root(self, tenant_id: uuid.UUID) -> Path:
        return self.base / "ftp" / str(tenant_id)

    def folder(self, tenant_id: uuid.UUID, ftp_dir: str) -> Path:
        return self.tenant_root(tenant_id) / ftp_dir.strip("/")

    def ensure_tree(self, tenant_id: uuid.UUID) -> Path:
        root = self.tenant_root(tenant_id)
        for ftp_dir in TREE:
            self.folder(tenant_id, ftp_dir).mkdir(parents=True, exist_ok=True, mode=0o750)
        return root

    def staging_path(self, tenant_id: uuid.UUID) -> Path:
        return self.base / "transfer" / "staging" / str(tenant_id)

    def staging_dir(self, tenant_id: uuid.UUID) -> Path:
        path = self.staging_path(tenant_id)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def new_staging_file(self, tenant_id: uuid.UUID) -> Path:
        return self.staging_dir(tenant_id) / f"{secrets.token_hex(12)}.part"

    def inbox_relpath(self, tenant_id: uuid.UUID, import_id: uuid.UUID) -> str:
        return f"transfer/inbox/{tenant_id}/{import_id}.xml"

    def resolve(self, relpath: str) -> Path:
        return self.base / relpath

    def tmp_dir(self) -> Path:
        path = self.base / "transfer" / "tmp"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    # --------------------------------------------------------------------------------------- operations

    def write_durably(self, path: Path, write: Callable[[IO[bytes]], None]) -> None:
        """Write ``path`` (not yet visible to anyone) and fsync it."""
        with open(path, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())

    def publish(self, src: Path, dest: Path) -> None:
        """Rename a durably written file into place; readers see the old state or the whole new file."""
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        os.replace(src, dest)
        fsync_dir(dest.parent)

    def accept(self, staged: Path, relpath: str) -> Path:
        """Move a completed upload from staging into the inbox."""
        dest = self.resolve(relpath)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(staged, dest)
        fsync_dir(dest.parent)
        return dest

    def sweep(self, older_than_seconds: float) -> int:
        """Delete leftovers of processes that died mid-write: staging files of interrupted uploads and
        temporary result files. Export files waiting to be published (``export-*``) are kept."""
        import time

        limit = time.time() - older_than_seconds
        removed = 0
        for folder in (self.base / "transfer" / "staging", self.base / "transfer" / "tmp"):
            if not folder.exists():
                continue
            for path in folder.rglob("*"):
                if path.name.startswith("export-") or path.is_symlink() or not path.is_file():
                    continue
                if path.stat().st_mtime < limit:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def move_to_processed(self, src: Path, tenant_id: uuid.UUID, name: str, import_id: uuid.UUID) -> Path:
        """Move an imported file to the tenant's processed/ folder (idempotent: a re-run finds it there)."""
        folder = self.folder(tenant_id, PROCESSED_DIR)
        dest = folder / name
        if not src.exists():
            return dest  # moved by an earlier run of the same job
        if dest.exists() or dest.is_symlink():
            # The same name was uploaded before: keep both, told apart by the import id.
            stem, dot, ext = name.rpartition(".")
            dest = folder / (f"{stem}.{import_id.hex[:12]}.{ext}" if dot else f"{name}.{import_id.hex[:12]}")
        self.publish(src, dest)
        return dest
