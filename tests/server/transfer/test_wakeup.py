"""An FTP upload in `serve` wakes the worker of the same process (issue 11 §7): the import starts at once, not at
the worker's next poll. The worker here polls every 30 s (its longest tick); the test waits for the import's result
for far less than that, and only after the worker has gone to wait, so only the wake-up can have started it."""

from __future__ import annotations

import ftplib
import io
import time
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.http.app import create_app
from promoflow.server.transfer.ftp import FtpServer
from promoflow.server.worker.runner import Worker
from promoflow.wire.xml import CONTACT_IMPORT_DIR, ContactRecord, write_contacts
from tests.conftest import make_tenant


def _within(seconds: float, check: Callable[[], Any], what: str) -> Any:
    """A bounded poll of observable state (never a fixed sleep)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not within {seconds:.1f} s")


def test_an_ftp_upload_wakes_the_worker_of_the_same_process(settings: Settings) -> None:
    slow = settings.model_copy(update={
        "ftp_port": 0, "worker_poll_seconds": 300.0, "worker_stall_seconds": 3600.0,
        "export_interval_seconds": 3600,
    })  # fmt: skip
    tenant = make_tenant(slow)
    with TestClient(create_app(slow, run_worker=True)) as client:
        worker = client.app.state.promoflow.extras["worker"].worker  # type: ignore[attr-defined]
        assert isinstance(worker, Worker)  # on an event loop of its own (worker/thread.py)
        assert worker.idle_wait >= 30  # every tick (poll, stall recovery, housekeeping) is 30 s or more
        server = FtpServer(slow).start()
        try:
            _within(10, lambda: worker.waiting, "the worker waiting for its next poll")
            started = time.monotonic()
            ftp = ftplib.FTP()
            ftp.connect("127.0.0.1", server.address[1], timeout=30)
            ftp.login(tenant["ftpUser"], tenant["ftpPassword"])
            data = write_contacts([ContactRecord(attributes={"email": "wake@example.com", "firstName": "W"})])
            reply = ftp.storbinary(
                f"STOR {CONTACT_IMPORT_DIR}/20260310120000_1_contacts.xml", io.BytesIO(data)
            )
            ftp.quit()
            assert reply.startswith("226"), reply

            def done() -> dict[str, Any] | None:
                items = client.get("/api/v2/imports", headers={"apikey": tenant["apiKey"]}).json()["items"]
                return items[0] if items and items[0]["status"] == "done" else None

            imp = _within(worker.idle_wait / 3, done, "the import done")
            assert imp["counts"]["applied"] == 1 and time.monotonic() - started < worker.idle_wait
        finally:
            server.stop()
