"""The delve backend: headless delve sessions on ctr (exec) and on the daemon (attach).

Each session is a context manager that owns its dlv process; on exit it detaches
(killing an exec'd target, leaving an attached daemon running) and stops delve.
Tracepoints are set the way `dlv trace` sets them (entry + every return address,
with TraceReturn), but load arguments, locals and return values deep enough to
see map contents, strings and marshalled []byte. A collector thread per session
turns every hit into events.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
import traceback
from pathlib import Path

from harness.console import warn
from harness.probes.delve.rpc import DelveClient, DelveRPCError, LoadConfig
from harness.probes.delve.translate import KIND_ARRAY, KIND_SLICE, find_sightings, looks_like_json, thread_to_event
from harness.probes.events import Event
from harness.probes.session import START_TIMEOUT, Collected, DebuggerSession, ProbeFault, daemon_pid

# Deep enough for manifest.Annotations["k"] and c.Labels["k"]; shallow enough that a
# hit costs milliseconds (clients and contexts are huge pointer graphs).
# Two levels reach map entries (manifest.Annotations["k"]) and labels; truncated strings
# and JSON bytes are loaded again in full by deepen(). Measured by benchmarks/delve_cost.py.
VALUES = LoadConfig(FollowPointers=True, MaxVariableRecurse=2, MaxStringLen=1024, MaxArrayValues=32,
                    MaxStructFields=-1)
# For one value that the shallow load truncated (the spec travels as marshalled JSON bytes,
# req.Container.Spec.Value): it is evaluated again, alone, with this budget.
WIDE_VALUES = LoadConfig(FollowPointers=True, MaxVariableRecurse=4, MaxStringLen=4096, MaxArrayValues=16384,
                         MaxStructFields=-1)

STACK_DEPTH = 24


class DelveSession(DebuggerSession):
    """`with DelveSession(...) as session:` a headless delve serving on a private unix socket."""

    DEBUGGER = "delve"

    def __init__(self, dlv: Path, process: str, work_dir: Path, log_dir: Path, *, exec_argv: list[str] | None = None,
                 attach_pid: int | None = None, env: dict[str, str] | None = None, source_root: str = "",
                 label: str | None = None) -> None:
        if (exec_argv is None) == (attach_pid is None):
            raise ValueError("give exactly one of exec_argv and attach_pid")
        self.dlv = dlv
        self.process = process
        label = label or process  # files are named by label: two ctr sessions in one pass differ
        self.socket = work_dir / f"dlv-{label}.sock"
        self.log_path = log_dir / f"delve-{label}.log"
        self.exec_argv = exec_argv
        self.attach_pid = attach_pid
        self.env = env
        self.source_root = source_root
        self.proc: subprocess.Popen | None = None
        self.control: DelveClient | None = None
        self.collected = Collected()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self.breakpoints = 0
        self.setup_seconds = 0.0  # starting delve, reading the binary, setting tracepoints
        self.raw_path = log_dir / f"delve-raw-{label}.jsonl" if os.environ.get("ANNOTRACE_DELVE_RAW") else None

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def __enter__(self) -> DelveSession:
        common = ["--headless", "--api-version=2", f"--listen={self.address}", "--accept-multiclient",
                  "--log-dest", str(self.log_path)]
        if self.exec_argv is not None:
            command = [str(self.dlv), "exec", *common, self.exec_argv[0], "--", *self.exec_argv[1:]]
        else:
            command = [str(self.dlv), "attach", str(self.attach_pid), *common]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.output_path = self.log_path.with_suffix(".out")
        output = self.output_path.open("ab")
        # The exec'd target inherits delve's stdin: the harness writes the line the container waits for.
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE if self.exec_argv else subprocess.DEVNULL,
                                     stdout=output, stderr=output, env=self.env, start_new_session=True)
        output.close()
        started = time.monotonic()
        try:
            self._wait_listening()
            self.control = DelveClient(self.address, timeout=120)
            self.control.get_version()  # answers once delve has read the binary
            self.setup_seconds += time.monotonic() - started
        except BaseException:
            self._stop_delve(kill_target=True)
            raise
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.output_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ProbeFault(f"delve on {self.process} exited at start ({tail[0]}); see {self.output_path}")
            if self.socket.exists():
                return
            time.sleep(0.05)
        raise ProbeFault(f"delve on {self.process} did not listen within {START_TIMEOUT:.0f}s; see {self.log_path}")

    def write_stdin(self, text: str) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(text.encode())
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass

    # Tracepoints.
    def static_callees(self, function: str) -> list[str]:
        """Functions `function` calls directly, from delve's reading of the binary.

        ListFunctions counts the matched function as depth 1, so FollowCalls=2 adds its callees.
        """
        assert self.control is not None
        found = self.control.list_functions(f"^{re.escape(function)}$", follow_calls=2)
        return [f for f in found if f != function]

    def trace(self, functions: list[str]) -> None:
        """Tracepoints on entry and on every return of each function."""
        assert self.control is not None
        started = time.monotonic()
        values = VALUES.to_json()
        for function in functions:
            try:
                self.control.create_breakpoint({"functionName": function, "continue": True, "line": -1,
                                                "stacktrace": STACK_DEPTH, "LoadArgs": values})
                self.breakpoints += 1
                for address in self.control.function_return_locations(function):
                    self.control.create_breakpoint({"addr": address, "traceReturn": True, "line": -1,
                                                    "stacktrace": STACK_DEPTH, "LoadArgs": values,
                                                    "LoadLocals": values})
                    self.breakpoints += 1
            except DelveRPCError as exc:
                if "already exists" not in str(exc):
                    raise ProbeFault(f"cannot set a tracepoint on {function} in {self.process}: {exc}") from exc
        self.setup_seconds += time.monotonic() - started

    # Collection.
    def start_collecting(self, sentinels: list[str], probe_pass: int, seq_lock: threading.Lock,
                         counter: list[int], started: float) -> None:
        """Continue the target hit after hit. A hit whose loaded values were cut short is
        translated (and deepened) at once, while the target is still stopped there; every other
        hit is translated by a worker thread while the target runs on."""
        client = DelveClient(self.address, timeout=None)
        pending: queue.Queue = queue.Queue()

        def translate(thread: dict, seq: int, when: float) -> Event:
            return thread_to_event(thread, self.process, seq, sentinels, probe_pass, when, self.source_root)

        def worker() -> None:
            while (item := pending.get()) is not None:
                try:
                    self.collected.events.append(translate(*item))
                except Exception as exc:  # recorded; the verdict becomes incomplete
                    self.collected.fault = self.collected.fault or f"translating a hit failed: {exc!r}"

        def loop() -> None:
            try:
                while not self._stop.is_set():
                    waited = time.monotonic()
                    state = client.continue_(VALUES)
                    self.collected.wait_seconds += time.monotonic() - waited
                    translating = time.monotonic()
                    if state.get("exited"):
                        self.collected.exited = True
                        self.collected.exit_status = state.get("exitStatus")
                        return
                    for thread in state.get("Threads") or []:
                        if not thread.get("breakPoint"):
                            continue
                        with seq_lock:
                            counter[0] += 1
                            seq = counter[0]
                        self.collected.hits += 1
                        if self.raw_path is not None:  # ANNOTRACE_DELVE_RAW=1: keep what delve sent (fixtures)
                            with self.raw_path.open("a") as raw:
                                raw.write(json.dumps(thread) + "\n")
                        when = round(time.monotonic() - started, 6)
                        if needs_deepening(thread):
                            event = translate(thread, seq, when)
                            deepen(client, thread.get("goroutineID", 0), event, sentinels)
                            self.collected.events.append(event)
                        else:
                            pending.put((thread, seq, when))
                    self.collected.translate_seconds += time.monotonic() - translating
                    if state.get("err") or state.get("Err"):
                        self.collected.fault = str(state.get("err") or state.get("Err"))
                        return
            except DelveRPCError as exc:
                if not self._stop.is_set():
                    self.collected.fault = str(exc)
            except Exception as exc:  # a bug here must not leave the target stopped forever
                self.collected.fault = f"collector failed: {exc!r}"
                (self.log_path.parent / f"collector-{self.process}.traceback").write_text(traceback.format_exc())
            finally:
                client.close()
                pending.put(None)
                self._worker.join()

        self._worker = threading.Thread(target=worker, name=f"translate-{self.process}", daemon=True)
        self._worker.start()
        self._thread = threading.Thread(target=loop, name=f"delve-{self.process}", daemon=True)
        self._thread.start()

    def stop_collecting(self) -> None:
        """Halt the target so the blocked `continue` returns, and end the collector."""
        self._stop.set()
        for _ in range(10):
            if self._thread is None or not self._thread.is_alive():
                return
            try:
                assert self.control is not None
                self.control.halt()
            except DelveRPCError:
                pass
            self._thread.join(1.0)
        if self._thread is not None and self._thread.is_alive():
            self.collected.fault = self.collected.fault or f"delve on {self.process} did not stop when halted"

    def __exit__(self, *exc_info) -> None:
        self._stop_delve(kill_target=self.exec_argv is not None)

    def _stop_delve(self, kill_target: bool) -> None:
        self._stop.set()
        if self.control is not None:
            try:
                if self._thread is not None and self._thread.is_alive():
                    self.control.halt()
                self.control.detach(kill=kill_target)
            except (DelveRPCError, OSError):
                pass
            self.control.close()
            self.control = None
        if self.proc is not None:
            if self.proc.stdin:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                warn(f"delve on {self.process} did not exit; killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        if self._thread is not None:
            self._thread.join(5.0)


def needs_deepening(thread: dict) -> bool:
    """True when a JSON []byte was cut short: the marshalled spec (a fast walk, no paths built).

    Long strings cut at MaxStringLen are left for the worker and stay marked as truncated."""
    info = thread.get("breakPointInfo") or {}
    stack = [*(info.get("arguments") or []), *(info.get("locals") or [])]
    while stack:
        variable = stack.pop()
        children = variable.get("children") or []
        kind = variable.get("kind")
        if kind in (KIND_SLICE, KIND_ARRAY) and variable.get("type", "").endswith("uint8"):
            if variable.get("len", 0) > len(children) and looks_like_json(children):
                return True
            continue
        stack.extend(children)
    return False


_TRUNCATED = re.compile(r"^(argument|local|return):(.+) \(((?:json )?bytes, )?truncated at \d+\)$")


def deepen(client: DelveClient, goroutine: int, event: Event, sentinels: list[str]) -> None:
    """Load again, in full, each text value the shallow load truncated; search it too.

    Arguments and locals are evaluated alone by their path.
    """
    still_unreadable = []
    for entry in event.unreadable:
        match = _TRUNCATED.match(entry)
        if not match:
            still_unreadable.append(entry)
            continue
        where, expression, is_bytes = match.groups()
        if is_bytes and not is_bytes.startswith("json"):
            still_unreadable.append(entry)  # binary data (a bbolt page, a tar stream): not worth loading
            continue
        if expression.startswith("~r"):
            # Result parameters cannot be named in an expression, and reloading all of the
            # function's arguments wide costs seconds per hit (receivers hold bbolt maps):
            # the value stays unknown, which localization respects.
            still_unreadable.append(entry)
            continue
        try:
            variable = client.eval(goroutine, 0, expression, WIDE_VALUES)
        except DelveRPCError:
            still_unreadable.append(entry)
            continue
        variable["name"] = expression
        found, missing = find_sightings([variable], where, sentinels)
        event.sightings.extend(s for s in found if s not in event.sightings)
        still_unreadable.extend(missing)
    event.unreadable = still_unreadable


__all__ = ["Collected", "DelveSession", "ProbeFault", "START_TIMEOUT", "daemon_pid"]
