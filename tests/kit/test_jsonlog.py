"""JSON log lines (kit/jsonlog): real records from a real logger, formatted as the server's handler does."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from promoflow.kit.jsonlog import JsonFormatter


@pytest.fixture
def emit() -> Any:
    logger = logging.getLogger(f"promoflow.test.{uuid.uuid4().hex[:6]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)

    def log(level: int, msg: str, *args: Any, **kw: Any) -> dict[str, Any]:
        logger.log(level, msg, *args, **kw)
        line = lines.pop()
        assert "\n" not in line  # one line, whatever the record holds
        return dict(json.loads(line))

    yield log
    logger.removeHandler(handler)


def test_an_event_and_its_fields_keep_their_values_and_types(emit: Any) -> None:
    r = emit(
        logging.INFO,
        "transfer.file_received tenant=%s file=%r bytes=%d status=%s",
        "t1",
        "a b=c.xml",
        12,
        "ok",
    )
    assert (
        r["event"] == "transfer.file_received"
        and r["level"] == "INFO"
        and r["logger"].startswith("promoflow.")
    )
    assert (r["tenant"], r["file"], r["bytes"], r["status"]) == ("t1", "a b=c.xml", 12, "ok")
    assert r["message"] == "transfer.file_received tenant=t1 file='a b=c.xml' bytes=12 status=ok"


def test_values_made_of_several_placeholders_prose_and_punctuation(emit: Any) -> None:
    started = emit(logging.INFO, "transfer.ftp_started address=%s:%d tls=%s", "127.0.0.1", 2121, False)
    assert (started["address"], started["tls"]) == ("127.0.0.1:2121", False)
    lost = emit(logging.WARNING, "job.lost id=%s kind=%s: %s", "j1", "file_import", "taken over")
    assert (lost["id"], lost["kind"]) == ("j1", "file_import")  # the sentence's colon is not the kind's
    recovered = emit(logging.WARNING, "worker.loop_recovered after=%d errors", 3)
    assert recovered["after"] == 3 and "errors" not in recovered
    literal = emit(logging.ERROR, "retention.failed step=tenants")
    assert literal["step"] == "tenants"
    named = emit(logging.WARNING, "fastlane.%s_failed reason=%s", "fetch", "timeout")
    assert named["event"] == "fastlane.fetch_failed" and named["reason"] == "timeout"


def test_other_messages_are_kept_whole_without_fields(emit: Any) -> None:
    r = emit(logging.INFO, "Running upgrade 0001 -> 0002, a=b")
    assert (
        set(r) == {"ts", "level", "logger", "message"} and r["message"] == "Running upgrade 0001 -> 0002, a=b"
    )
    r = emit(logging.INFO, "Running upgrade %s -> %s", "0001", "0002")
    assert "event" not in r and r["message"] == "Running upgrade 0001 -> 0002"
    r = emit(logging.INFO, "api.thing 100%% done path=%s", "/x")
    assert r["path"] == "/x"


def test_an_exception_is_one_field_and_extra_values_are_fields(emit: Any) -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        r = emit(logging.ERROR, "api.unhandled_error path=%s", "/x", exc_info=True, extra={"request": "r1"})
    assert r["path"] == "/x" and r["request"] == "r1"
    assert r["exception"].startswith("Traceback (most recent call last):")
    assert r["exception"].endswith("ValueError: boom\nsecond line")
