"""One probe pass under a debugger: the daemon attached, ctr exec'd, the action driven, events out.

The debugger is a session class with DelveSession's interface (harness/probes/delve/backend.py):
delve and gdb (harness/probes/gdb/session.py) both fit it.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.actions import ActionResult, run_action
from harness.console import step
from harness.image.scenario import Scenario, Sentinel
from harness.errors import HarnessError
from harness.probes.session import START_TIMEOUT, ProbeFault, daemon_pid
from harness.probes.events import Event
from harness.probes.plan import ResolvedPlan
from harness.sandbox.daemon import Sandbox

CTR_EXIT_TIMEOUT = 240.0


class DebuggerRun:
    """The handle actions._drive uses for a ctr running under a debugger."""

    def __init__(self, session) -> None:
        self.session = session

    def poll(self) -> int | None:
        collected = self.session.collected
        if collected.exited:
            return collected.exit_status if collected.exit_status is not None else 0
        if collected.fault:
            return -1
        return None

    def finish(self, line: str, timeout: float) -> tuple[int | None, str]:
        self.session.write_stdin(line)
        if not self.session.wait_exit(max(timeout, CTR_EXIT_TIMEOUT)):
            raise subprocess.TimeoutExpired("ctr under a debugger", timeout)
        output = self.session.output_path.read_text(errors="replace") if self.session.output_path.exists() else ""
        return self.poll(), output

    def abort(self) -> None:
        pass  # the session's exit kills the target


@dataclass
class PassResult:
    index: int
    events: list[Event] = field(default_factory=list)
    action: ActionResult | None = None
    faults: list[str] = field(default_factory=list)
    breakpoints: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    functions: dict[str, list[str]] = field(default_factory=dict)
    costs: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"pass": self.index, "functions": self.functions, "breakpoints": self.breakpoints,
                "hits": self.hits, "events": len(self.events), "faults": self.faults, "costs": self.costs,
                "seconds": round(self.seconds, 2),
                "exit_code": self.action.exit_code if self.action else None}


def debugger_pass(session_class, index: int, sandbox: Sandbox, scenario: Scenario, sentinels: list[Sentinel],
                  reference: str, container_id: str, state_dir: Path, tool: Path, plan: ResolvedPlan,
                  source_root: str, seq_start: int = 0, session_options: dict | None = None) -> PassResult:
    """Run the scenario's action once with the plan's tracepoints; faults are recorded, not raised.

    `session_class(tool, process, work_dir, log_dir, exec_argv=|attach_pid=, ...)` is DelveSession
    or GdbSession; `tool` is the debugger's binary; `session_options` go to every session.
    """
    options = session_options or {}
    name = session_class.DEBUGGER
    assert sandbox.workdir is not None
    result = PassResult(index, functions=plan.functions)
    values = [s.value for s in sentinels]
    counter, lock = [seq_start], threading.Lock()
    started = time.monotonic()
    log_dir = state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    step(f"probe pass {index}: {name} on ctr ({len(plan.functions['ctr'])} functions) and containerd "
         f"({len(plan.functions['containerd'])} functions)")
    sessions: dict = {}  # "containerd", "ctr", "ctr#2" (create, then start)
    daemon = session_class(tool, "containerd", sandbox.workdir, log_dir, attach_pid=daemon_pid(sandbox),
                          source_root=source_root, **options)
    daemon_ready = threading.Event()
    daemon_error: list[BaseException] = []

    def attach_daemon() -> None:
        # Runs while ctr's debugger starts: reading two large binaries in parallel halves the set-up.
        try:
            daemon.__enter__()
            sessions["containerd"] = daemon
            daemon.trace(plan.functions["containerd"])
            daemon.start_collecting(values, index, lock, counter, started)
        except BaseException as exc:  # reported by the main thread
            daemon_error.append(exc)
        finally:
            daemon_ready.set()

    attacher = threading.Thread(target=attach_daemon, name="attach-containerd", daemon=True)
    attacher.start()

    @contextlib.contextmanager
    def launch(command: list[str], env: dict[str, str]):
        key = "ctr" if "ctr" not in sessions else f"ctr#{sum(k.startswith('ctr') for k in sessions) + 1}"
        with session_class(tool, "ctr", sandbox.workdir, log_dir, exec_argv=command, env=env,
                           source_root=source_root, label=key.replace("#", "-"), **options) as ctr:
            sessions[key] = ctr
            ctr.trace(plan.functions["ctr"])
            # The daemon's tracepoints must be in place before ctr sends its first request.
            if not daemon_ready.wait(START_TIMEOUT) or daemon_error:
                raise ProbeFault(f"could not attach {name} to containerd: {daemon_error[0] if daemon_error else 'timeout'}")
            ctr.start_collecting(values, index, lock, counter, started)
            yield DebuggerRun(ctr)

    try:
        result.action = run_action(sandbox, scenario, sentinels, reference, container_id, state_dir, launch)
    except HarnessError as exc:  # ProbeFault included: a fault makes the pass incomplete, not a crash
        result.faults.append(str(exc))
    finally:
        daemon_ready.wait(START_TIMEOUT)
        if "containerd" in sessions:
            daemon.stop_collecting()
        daemon.__exit__(None, None, None)
    for process, session in sessions.items():
        result.events += session.collected.events
        result.breakpoints[process] = session.breakpoints
        result.hits[process] = session.collected.hits
        result.costs[process] = {"wait": round(session.collected.wait_seconds, 2),
                                 "translate": round(session.collected.translate_seconds, 2),
                                 "setup": round(session.setup_seconds, 2)}
        if session.collected.fault:
            result.faults.append(f"{process}: {session.collected.fault}")
    for key, session in sessions.items():
        if key.startswith("ctr") and not session.collected.exited:
            result.faults.append(f"{key}: the target did not run to its end under {name}")
    result.events.sort(key=lambda e: e.seq)
    result.seconds = time.monotonic() - started
    return result
