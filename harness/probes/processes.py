"""The processes a probe pass can watch, as data.

Each is a binary of the containerd build, started one of three ways:
- `exec`: the harness starts it under the debugger (ctr, once per ctr command);
- `attach`: it is running already and the debugger attaches (the sandboxed daemon);
- `on-start`: the daemon starts it; the shim wrapper (harness/sandbox/shim.py) holds it
  until the debugger is attached (the runc shim, once per task).
How a process joins the call graph (client call -> handler in the next process) is in
the version table (`Layout.rpc_joins`).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.sandbox.shim import SHIM_BINARY


@dataclass(frozen=True)
class WatchedProcess:
    name: str  # as events, plans and verdicts name it
    binary: str  # in the build's bin/
    start: str  # exec | attach | on-start


CTR = WatchedProcess("ctr", "ctr", "exec")
DAEMON = WatchedProcess("containerd", "containerd", "attach")
SHIM = WatchedProcess(SHIM_BINARY, SHIM_BINARY, "on-start")
WATCHED = (CTR, DAEMON, SHIM)
PROCESSES = tuple(p.name for p in WATCHED)


def watched(name: str) -> WatchedProcess:
    return next(p for p in WATCHED if p.name == name)
