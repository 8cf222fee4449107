"""Passive data ports: with PROMOFLOW_FTP_PASSIVE_PORTS set, a data connection uses one of them or none. When
every one is in use, PASV is refused (425) and the log names the setting and the ports — the server does not
fall back to a port outside the range, which the firewall the range was opened in would not let through."""

from __future__ import annotations

import ftplib
import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from promoflow.server.transfer.ftp import FtpServer
from tests.conftest import Api


def _taken() -> socket.socket:
    """A port some other program listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.fixture
def busy() -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [stack.enter_context(_taken()) for _ in range(2)]


def test_every_passive_port_in_use_is_425_and_a_log_line_naming_the_setting(
    api: Api, busy: list[socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    ports = [s.getsockname()[1] for s in busy]
    spec = ",".join(map(str, ports))
    settings = api.settings.model_copy(update={"ftp_port": 0, "ftp_passive_ports": spec})
    server = FtpServer(settings, clock=api.clock).start()
    client = ftplib.FTP()
    try:
        client.connect("127.0.0.1", server.address[1], timeout=30)
        client.login(api.tenant["ftpUser"], api.tenant["ftpPassword"])
        with (
            caplog.at_level(logging.WARNING, logger="promoflow.transfer"),
            pytest.raises(ftplib.error_temp) as refused,
        ):
            client.makepasv()
        assert str(refused.value).startswith("425 "), refused.value
        assert "every passive port of the server is in use" in str(refused.value)
        [line] = [
            r.getMessage() for r in caplog.records if "transfer.passive_ports_exhausted" in r.getMessage()
        ]
        assert f"address=127.0.0.1 ports={spec}" in line and "PROMOFLOW_FTP_PASSIVE_PORTS" in line, line

        # A port of the range that is free again is used — and only such a port.
        busy[1].close()
        _, port = client.makepasv()
        assert port == ports[1]
        assert client.nlst("/integration") is not None  # the session goes on over it
    finally:
        client.close()
        server.stop()
