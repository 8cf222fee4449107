"""The tests' own child processes stop when the test process that started them dies (`tests.support.children`):
an interrupted or killed test run leaves no server behind."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.support.children import tied

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent-death signal: Linux only"
)

# A stand-in for a test process: starts a long-lived child the way the tests do (its own session), waits for the
# child's first line (so ``setpriv`` has set the signal and run the program: killing the parent before that is a
# race the test would lose now and then), prints the child's pid, and waits to be killed.
_PARENT = textwrap.dedent(
    """
    import subprocess, sys
    child = subprocess.Popen(sys.argv[1:], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\\n"
    print(child.pid, flush=True)
    sys.stdin.read()
    """
)


def test_a_tied_child_is_stopped_when_the_process_that_started_it_is_killed() -> None:
    child_cmd = tied([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(300)"])
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, *child_cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        fd = os.pidfd_open(pid)  # held before the kill, so the pid cannot be reused under us
        try:
            assert not select.select([fd], [], [], 0)[0], "the child should be running"
            parent.send_signal(signal.SIGKILL)  # no teardown, no handler: as an xdist worker that is killed
            parent.wait(30)
            assert select.select([fd], [], [], 30)[0], "the child outlived the process that started it"
        finally:
            os.close(fd)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(30)
        for stream in (parent.stdin, parent.stdout):
            if stream is not None:
                stream.close()
