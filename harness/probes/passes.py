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
from harness.probes.matching import SentinelMatcher
from harness.probes.session import START_TIMEOUT, ProbeFault, daemon_pid
from harness.probes.events import Event
from harness.probes.plan import ResolvedPlan
from harness.sandbox.daemon import Sandbox
from harness.sandbox.shim import SHIM_BINARY as SHIM, shim_server_pid

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
                  source_root: str, seq_start: int = 0, session_options: dict | None = None,
                  watch_shim: bool = False, kept: dict | None = None) -> PassResult:
    """Run the scenario's action once with the plan's tracepoints; faults are recorded, not raised.

    `session_class(tool, process, work_dir, log_dir, exec_argv=|attach_pid=, ...)` is DelveSession
    or GdbSession; `tool` is the debugger's binary; `session_options` go to every session. With
    `watch_shim` (and shim functions in the plan) each task's shim is attached from its start.
    With `kept` (a dict the caller holds across passes) the daemon's session stays attached, halted,
    from one pass to the next and is only given the new plan: one attach and one detach per run,
    so a detach cannot race a thread at a tracepoint between passes. The caller ends it.
    """
    options = session_options or {}
    name = session_class.DEBUGGER
    assert sandbox.workdir is not None
    result = PassResult(index, functions=plan.functions)
    matcher = SentinelMatcher([s.value for s in sentinels], {s.value: s.nominal for s in sentinels})
    counter, lock = [seq_start], threading.Lock()
    started = time.monotonic()
    log_dir = state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    shim_functions = plan.functions.get(SHIM, []) if watch_shim else []
    step(f"probe pass {index}: {name} on ctr ({len(plan.functions['ctr'])} functions), containerd "
         f"({len(plan.functions['containerd'])} functions)"
         + (f" and the shim ({len(shim_functions)} functions)" if shim_functions else ""))
    sessions: dict = {}  # "containerd", "ctr", "ctr#2" (create, then start), "containerd-shim-runc-v2"
    reused = kept is not None and kept.get("containerd") is not None and kept["containerd"].alive
    if reused:
        daemon = kept["containerd"]
    else:
        try:
            pid = daemon_pid(sandbox)
        except ProbeFault as exc:
            result.faults.append(str(exc))
            return result
        daemon = session_class(tool, "containerd", sandbox.workdir, log_dir, attach_pid=pid,
                               source_root=source_root, **options)
    daemon_ready = threading.Event()
    daemon_error: list[BaseException] = []

    def attach_daemon() -> None:
        # Runs while ctr's debugger starts: reading two large binaries in parallel halves the set-up.
        try:
            if reused:
                daemon.new_pass(log_dir, plan.functions["containerd"])
            else:
                daemon.__enter__()
                daemon.trace(plan.functions["containerd"])
                if kept is not None:
                    kept["containerd"] = daemon
            sessions["containerd"] = daemon
            daemon.start_collecting(matcher, index, lock, counter, started)
        except BaseException as exc:  # reported by the main thread
            daemon_error.append(exc)
        finally:
            daemon_ready.set()

    attacher = threading.Thread(target=attach_daemon, name="attach-containerd", daemon=True)
    attacher.start()
    shims = _ShimWatcher(session_class, tool, sandbox, log_dir, shim_functions, source_root, options, matcher,
                         index, lock, counter, started, sessions) if shim_functions else None

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
            ctr.start_collecting(matcher, index, lock, counter, started)
            yield DebuggerRun(ctr)

    try:
        if shims is not None:
            shims.start()
        result.action = run_action(sandbox, scenario, sentinels, reference, container_id, state_dir, launch)
    except HarnessError as exc:  # ProbeFault included: a fault makes the pass incomplete, not a crash
        result.faults.append(str(exc))
    finally:
        if shims is not None:
            shims.stop()
            result.faults += shims.faults
        daemon_ready.wait(START_TIMEOUT)
        if "containerd" in sessions:
            daemon.stop_collecting()  # halts the daemon: a kept session waits there for the next pass
        if kept is None or daemon.collected.fault or daemon_error:
            daemon.__exit__(None, None, None)
            if kept is not None:
                kept.pop("containerd", None)
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


class _ShimWatcher:
    """Attach a debugger to each shim server the wrapper holds (harness/sandbox/shim.py), then let it go."""

    def __init__(self, session_class, tool, sandbox: Sandbox, log_dir: Path, functions: list[str], source_root: str,
                 options: dict, matcher: SentinelMatcher, index: int, lock: threading.Lock, counter: list[int],
                 started: float, sessions: dict) -> None:
        self.session_class, self.tool, self.sandbox, self.log_dir = session_class, tool, sandbox, log_dir
        self.functions, self.source_root, self.options, self.matcher = functions, source_root, options, matcher
        self.index, self.lock, self.counter, self.started, self.sessions = index, lock, counter, started, sessions
        self.attach_dir = sandbox.shim_attach_dir
        self.real_shim = sandbox.build.binary(SHIM)
        self.faults: list[str] = []
        self.attached: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="attach-shims", daemon=True)

    def start(self) -> None:
        for stale in self.attach_dir.glob("*"):
            stale.unlink(missing_ok=True)
        (self.attach_dir / "enabled").touch()
        self._thread.start()

    def _watch(self) -> None:
        handled: set[str] = set()
        while not self._stop.is_set():
            for request in sorted(self.attach_dir.glob("*.request")):
                container = request.name.removesuffix(".request")
                if container in handled:
                    continue
                handled.add(container)
                try:
                    self._attach(container)
                except Exception as exc:  # noqa: BLE001 - recorded; the verdict becomes incomplete
                    self.faults.append(f"{SHIM} of {container}: could not attach {self.session_class.DEBUGGER}: {exc}")
                finally:
                    (self.attach_dir / f"{container}.ready").touch()
            self._stop.wait(0.02)

    def _attach(self, container: str) -> None:
        deadline = time.monotonic() + 10
        pid = shim_server_pid(self.real_shim, container)
        while pid is None and time.monotonic() < deadline:
            time.sleep(0.05)
            pid = shim_server_pid(self.real_shim, container)
        if pid is None:
            raise ProbeFault("its server process was not found")
        label = SHIM if SHIM not in self.sessions else f"{SHIM}-{len(self.attached) + 1}"
        session = self.session_class(self.tool, SHIM, self.sandbox.workdir, self.log_dir, attach_pid=pid,
                                     source_root=self.source_root, label=label, **self.options)
        session.__enter__()
        self.attached.append(session)
        self.sessions[label] = session
        session.trace(self.functions)
        session.start_collecting(self.matcher, self.index, self.lock, self.counter, self.started)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        (self.attach_dir / "enabled").unlink(missing_ok=True)
        for session in self.attached:
            # A shim that served `ctr run --rm` has exited already; one still running is let go.
            if not session.collected.exited:
                session.stop_collecting()
            session.__exit__(None, None, None)
