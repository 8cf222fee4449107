"""Fixtures for the SDK tests (helpers live in ``_support``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ._support import FakeClock, ScriptedServer


@pytest.fixture
def engage_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
