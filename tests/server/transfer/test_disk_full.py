"""An upload that fills the disk: `promoflow ftp` as a real process whose data dir is a 1 MiB tmpfs, so the kernel
itself answers ENOSPC to the server's writes — nothing in the server is replaced or patched. Any other error of
the file system is named too: the process's file size limit (RLIMIT_FSIZE) makes the kernel answer EFBIG.

The tmpfs is mounted in a mount namespace of the server process alone (``unshare --user --map-root-user
--mount``: no root needed where unprivileged user namespaces are allowed; skipped where they are not). The test
sees the server's file system through ``/proc/<pid>/root``; the database lives outside the tmpfs, so only the
upload's writes fail, as on a data disk that filled up.
"""

from __future__ import annotations

import contextlib
import ftplib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from promoflow.server.config import Settings
from promoflow.server.models import file_import, job
from promoflow.wire.xml import REDEMPTION_IMPORT_DIR
from tests.conftest import make_tenant
from tests.support.db import read_engine

from .test_processes import Proc, wait_for

TMPFS_BYTES = 1024 * 1024


def _namespaces_work() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         'd=$(mktemp -d) && mount -t tmpfs -o size=64k probe "$d"; rc=$?; umount "$d" 2>/dev/null; rmdir "$d"; exit $rc'],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not _namespaces_work(), reason="needs a tmpfs in a user + mount namespace (unshare -rm)"
)


def _ftp_on_tmpfs(url: str, data_dir: Path) -> Proc:
    """`promoflow ftp --port 0` with ``data_dir`` a fresh tmpfs of TMPFS_BYTES seen by the server alone."""
    script = f'mount -t tmpfs -o size={TMPFS_BYTES} promoflow-full "$0" && exec "$@"'
    return Proc(
        ["ftp", "--port", "0"],
        {"PROMOFLOW_DATABASE_URL": url, "PROMOFLOW_DATA_DIR": str(data_dir), "PROMOFLOW_LOG_LEVEL": "info"},
        r"promoflow ftp listening on ftp://[\d.]+:(\d+)",
        wrap=["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(data_dir)],
    )


def _store(port: int, tenant: dict[str, Any], name: str, data: bytes) -> str:
    """STOR as an FTP client does it: the reply is read also when the server closed the data connection while
    the client was still sending (it stops reading at the failed write)."""
    with ftplib.FTP() as client:  # closed however the reply ends
        client.connect("127.0.0.1", port, timeout=60)
        client.login(tenant["ftpUser"], tenant["ftpPassword"])
        client.voidcmd("TYPE I")
        with (
            client.transfercmd(f"STOR {REDEMPTION_IMPORT_DIR}/{name}") as conn,
            contextlib.suppress(BrokenPipeError, ConnectionResetError),
        ):
            conn.sendall(data)
        return client.voidresp()


@needs_namespaces
def test_an_upload_that_fills_the_disk_is_452_logged_deleted_and_never_queued(
    own_db: str, data_dir: Path
) -> None:
    tenant = make_tenant(Settings(database_url=own_db, data_dir=data_dir))
    tenant_id = uuid.UUID(tenant["tenantId"])
    server = _ftp_on_tmpfs(own_db, data_dir)
    try:
        assert server.match is not None
        port = int(server.match.group(1))
        # What the server sees at data_dir: the tmpfs of its own mount namespace.
        seen = Path(f"/proc/{server.proc.pid}/root") / str(data_dir).lstrip("/")
        assert os.statvfs(seen).f_blocks * os.statvfs(seen).f_frsize == TMPFS_BYTES

        with pytest.raises(ftplib.error_temp) as refused:
            _store(port, tenant, "20260310120000_1_redemptions.xml", b"x" * (2 * TMPFS_BYTES))
        reply = str(refused.value)
        assert reply.startswith("452 "), reply
        assert "No space left on device" in reply and "nothing was queued" in reply, reply

        # The server's log names the cause, the tenant and the file.
        logged = wait_for(
            lambda: [line for line in server.output if "transfer.upload_write_failed" in line],
            timeout=30, what="the log line of the failed upload",
        )  # fmt: skip
        assert "No space left on device" in logged[0] and str(tenant_id) in logged[0], logged
        assert "20260310120000_1_redemptions.xml" in logged[0], logged

        # The partial file is gone: nothing in staging or the inbox, and its space is free again — a file that
        # fits only in a disk without it is taken.
        staging = seen / "transfer" / "staging" / str(tenant_id)
        assert list(staging.iterdir()) == []
        assert not (seen / "transfer" / "inbox").exists() or not any(
            (seen / "transfer" / "inbox").rglob("*.xml")
        )
        accepted = _store(port, tenant, "20260310120001_2_redemptions.xml", b"y" * (TMPFS_BYTES * 3 // 4))
        assert accepted.startswith("226"), accepted
    finally:
        server.kill()

    # Only the second upload was recorded and queued.
    engine = read_engine(own_db)
    try:
        with engine.connect() as conn:
            names = conn.scalars(
                select(file_import.c.file_name).where(file_import.c.tenant_id == tenant_id)
            ).all()
            jobs = conn.scalars(select(job.c.kind).where(job.c.tenant_id == tenant_id)).all()
    finally:
        engine.dispose()
    assert names == ["20260310120001_2_redemptions.xml"]
    assert jobs == ["file_import"]


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_any_other_write_error_is_451_naming_it(own_db: str, data_dir: Path) -> None:
    tenant = make_tenant(Settings(database_url=own_db, data_dir=data_dir))
    tenant_id = uuid.UUID(tenant["tenantId"])
    limit = 4 * 1024 * 1024  # above what the SQLite database and its log grow to here
    server = Proc(
        ["ftp", "--port", "0"],
        {
            "PROMOFLOW_DATABASE_URL": own_db,
            "PROMOFLOW_DATA_DIR": str(data_dir),
            "PROMOFLOW_LOG_LEVEL": "info",
        },
        r"promoflow ftp listening on ftp://[\d.]+:(\d+)",
        wrap=["prlimit", f"--fsize={limit}"],
    )
    try:
        assert server.match is not None
        port = int(server.match.group(1))
        with pytest.raises(ftplib.error_temp) as refused:
            _store(port, tenant, "20260310120000_1_redemptions.xml", b"x" * (limit + limit // 2))
        reply = str(refused.value)
        assert reply.startswith("451 ") and "File too large" in reply and "nothing was queued" in reply, reply
        logged = wait_for(
            lambda: [line for line in server.output if "transfer.upload_write_failed" in line],
            timeout=30, what="the log line of the failed upload",
        )  # fmt: skip
        assert "EFBIG (File too large)" in logged[0] and str(tenant_id) in logged[0], logged
        assert list((data_dir / "transfer" / "staging" / str(tenant_id)).iterdir()) == []
        assert _store(port, tenant, "20260310120001_2_redemptions.xml", b"y" * 1024).startswith("226")
    finally:
        server.kill()
