"""Child processes that do not outlive the test process that started them.

A test's server runs in a session of its own (``start_new_session``: a Ctrl-C at the terminal must not reach it
before the test stops it), so an xdist worker that dies without its fixtures' teardown — killed, a timeout that
exits the process, an interrupted run — used to leave its servers running, holding ports and files. On Linux the
command is started through util-linux's ``setpriv --pdeathsig KILL``: the kernel kills the child when the thread
that started it ends (KILL, not TERM: a process started with SIGTERM ignored — nohup, some runners — keeps it
ignored, and the test process is gone anyway), so a child must be started on a thread that lives as long as the
child is needed (the tests start them from fixtures and tests, on the worker's main thread). Where ``setpriv`` is missing
the command runs as given.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence

_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def tied(cmd: Sequence[str]) -> list[str]:
    """``cmd``, started so that the kernel stops it when the starting thread ends (see the module docstring)."""
    if _SETPRIV is None:
        return list(cmd)
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *cmd]
