"""Real processes for tests: `promoflow serve` on a free loopback port, started and stopped cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .children import tied

_LISTENING = re.compile(r"promoflow api listening on (http://\S+)")
_FTP_LISTENING = re.compile(r"promoflow ftp listening on (ftps?://\S+)")


class ServerProcess:
    def __init__(
        self,
        proc: subprocess.Popen[str],
        base_url: str,
        output: list[str],
        drain: threading.Thread | None = None,
    ) -> None:
        self.proc = proc
        self.base_url = base_url
        self.output = output
        self.drain = drain

    def _close_output(self) -> None:
        # The drain thread reads until EOF (the process is gone); then the pipe can be closed without a
        # ResourceWarning, which pytest's filterwarnings=error would turn into a failure.
        if self.drain is not None:
            self.drain.join(20)
            if self.drain.is_alive():
                return
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    @property
    def ftp_url(self) -> str | None:
        """``ftp://host:port`` of the server's FTP service (printed before the API's line), if it runs one."""
        for line in self.output:
            m = _FTP_LISTENING.search(line)
            if m:
                return m.group(1)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._close_output()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)
        self._close_output()


def start_server(
    database_url: str, data_dir: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 60
) -> ServerProcess:
    """Start `promoflow serve --port 0` and return once it says where it listens. Unless told otherwise
    (``--no-ftp``, ``--ftp-port``), its FTP server takes a free port too (see ``ServerProcess.ftp_url``)."""
    if "--no-ftp" not in extra and "--ftp-port" not in extra:
        extra = (*extra, "--ftp-port", "0")
    cmd = [
        sys.executable, "-m", "promoflow.cli", "serve", "--port", "0", "--database-url", database_url,
        "--data-dir", str(data_dir), *extra,
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        tied(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        start_new_session=True,
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = _LISTENING.search(line)
            if m and not found.is_set():
                url.append(m.group(1))
                found.set()
        found.set()

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    if not found.wait(timeout) or not url:
        ServerProcess(proc, "", output, drainer).kill()
        raise RuntimeError("promoflow serve did not start:\n" + "".join(output))
    return ServerProcess(proc, url[0], output, drainer)


@contextmanager
def running_server(
    database_url: str, data_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    server = start_server(database_url, data_dir, *extra, env=env)
    try:
        yield server
    finally:
        server.stop()
