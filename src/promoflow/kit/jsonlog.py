"""Log records as JSON lines, for log shippers (``PROMOFLOW_LOG_FORMAT=json``).

One object a line: ``ts`` (UTC, milliseconds, as the access log writes it), ``level``, ``logger``, ``message``
(the line as the text format shows it), the ``event`` and its ``key=value`` fields when the message is written
the way promoflow writes its own — ``log.info("transfer.file_received tenant=%s bytes=%d", …)`` gives
``"event": "transfer.file_received", "tenant": "…", "bytes": 1204`` — and a traceback as one string,
``exception``. Other libraries' lines (uvicorn, alembic, pyftpdlib) carry their message as it is.

The fields are read from the call's format string and its arguments, not parsed back out of the finished text,
so a value with spaces or an ``=`` in it (a file name, an error) stays whole, and numbers stay numbers. A key
whose value is written with more than one placeholder (``address=%s:%d``) gets the text they make together.

Only the standard library: a handful of lines is no reason for a dependency, and the records need nothing that
`json` cannot write.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from typing import Any

# A printf placeholder (what `%`-formatting consumes one argument for); `%%` is a literal percent sign.
_SPEC = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<conv>[diouxXeEfFgGcrsa%])"
)
_EVENT = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")
_KEY = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_.]*)=(?P<value>.*)$", re.S)
_RESERVED = frozenset({"ts", "level", "logger", "event", "message", "exception", "stack"})
# Attributes every LogRecord has; anything else on a record came from `extra=` and is written as a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _plain(value: Any, conv: str) -> Any:
    """A value as JSON carries it: numbers, text, booleans and null as they are, anything else as the text the
    placeholder would have made of it."""
    if value is None or isinstance(value, bool | int | str | dict | list | tuple):
        return value  # containers as JSON (what `json` cannot write inside them, as text)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return repr(value) if conv == "r" else str(value)


def event_fields(record: logging.LogRecord) -> tuple[str | None, dict[str, Any]]:
    """The record's event name and its ``key=value`` fields (none for a message not written as an event)."""
    message = record.getMessage()
    first = message.split(" ", 1)[0]
    if not _EVENT.match(first):
        return None, {}
    fields: dict[str, Any] = {}
    fmt = record.msg if isinstance(record.msg, str) else ""
    args = record.args if isinstance(record.args, tuple) else ()
    if not args and "%" in fmt:
        return first, fields  # never formatted with arguments: its text is its own (a literal `%` in it)
    taken = 0
    for index, token in enumerate(fmt.split(" ") if fmt else []):
        specs = [m for m in _SPEC.finditer(token) if m.group("conv") != "%"]
        if any(m.group("name") is not None or "*" in m.group(0) for m in specs):
            return first, {}  # mapping or `*` placeholders: not our way of writing a line
        token_args = args[taken : taken + len(specs)]
        taken += len(specs)
        key = _KEY.match(token)
        if index == 0 or key is None or key["key"] in _RESERVED:
            continue  # the event name (it may have a placeholder of its own: "fastlane.%s_failed"), or prose
        # "kind=%s:" — the colon ends the sentence, not the value.
        text = key["value"].rstrip(":,;")
        if len(specs) == 1 and specs[0].span() == (len(key["key"]) + 1, len(key["key"]) + 1 + len(text)):
            fields[key["key"]] = _plain(token_args[0], specs[0].group("conv")) if token_args else None
        else:
            try:
                fields[key["key"]] = text % tuple(token_args) if specs else text
            except (TypeError, ValueError):
                return first, {}
    if taken != len(args):
        return first, {}  # the placeholders did not account for the arguments: keep the message only
    return first, fields


def iso_time(created: float) -> str:
    """``2026-03-10T12:00:00.123Z``: UTC with milliseconds, as in the access log."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object on one line (a traceback included: newlines are escaped in its string)."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = event_fields(record)
        body: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        if event is not None:
            body["event"] = event
        body["message"] = record.getMessage()
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in _RESERVED and not name.startswith("_"):
                fields.setdefault(name, _plain(value, "s"))
        body.update(fields)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
