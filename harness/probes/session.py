"""What every debugger session shares (delve and gdb): faults, what a collector gathered,
waiting for an exec'd target, and finding the sandboxed daemon to attach to."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.probes.events import Event

START_TIMEOUT = 60.0


class ProbeFault(HarnessError):
    """The debugger died, hung or could not attach: the verdict is incomplete, not a result."""


@dataclass
class Collected:
    events: list[Event] = field(default_factory=list)
    hits: int = 0
    fault: str | None = None
    exited: bool = False
    exit_status: int | None = None
    wait_seconds: float = 0.0  # delve: inside `continue` (target running + delve loading values)
    translate_seconds: float = 0.0  # turning hits into events here


class DebuggerSession:
    """Base of DelveSession and GdbSession: a collector thread that ends when the target exits."""

    _thread: threading.Thread | None = None

    def wait_exit(self, timeout: float) -> bool:
        """For an exec'd target: wait until it exits (the collector sees it)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


def daemon_pid(sandbox) -> int:
    assert sandbox.daemon is not None
    pid = sandbox.daemon.pid
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        raise ProbeFault("the sandboxed containerd is not running (it died); nothing to attach to") from None
    if not exe.endswith("containerd"):
        raise ProbeFault(f"pid {pid} is {exe}, not containerd")
    return pid
