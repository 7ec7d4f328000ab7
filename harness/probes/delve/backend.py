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
import subprocess
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

from harness.console import warn
from harness.probes.delve.rpc import MEMORY_CHUNK, DelveClient, DelveRPCError, LoadConfig
from harness.probes.delve.translate import (KIND_ARRAY, KIND_FUNC, KIND_SLICE, KIND_STRING, Scan, looks_like_json,
                                            looks_like_text, scan, thread_to_event)
from harness.probes.events import TEXT_CONTAINERS, Event, Sighting
from harness.probes.matching import SentinelMatcher
from harness.probes.session import START_TIMEOUT, Collected, DebuggerSession, ProbeFault, daemon_pid

# Deep enough for manifest.Annotations["k"], c.Labels["k"] and a closure's captured map;
# shallow enough that a hit costs milliseconds (clients and contexts are huge pointer graphs).
# Strings and text []byte cut by these limits are read again in full from memory
# (read_cut_values). Measured by benchmarks/delve_cost.py.
VALUES = LoadConfig(FollowPointers=True, MaxVariableRecurse=2, MaxStringLen=1024, MaxArrayValues=32,
                    MaxStructFields=-1)

# A map, slice or closure of containerd's code cut by VALUES' depth is loaded again alone, this deep
# (at most RELOADS_PER_HIT per hit): option closures nest (WithNewSpec.func1 -> opts -> WithAnnotations.func1
# -> annotations), and what they captured is what travels.
RELOAD = LoadConfig(FollowPointers=True, MaxVariableRecurse=4, MaxStringLen=4096, MaxArrayValues=64,
                    MaxStructFields=-1)
RELOADS_PER_HIT = 8
RELOAD_CLOSURES_OF = "github.com/containerd/containerd"

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
        self._breakpoint_ids: list[int] = []
        self.label = label
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

    # A session kept from one pass to the next (the daemon's: one attach, one detach per run).
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.control is not None

    def new_pass(self, log_dir: Path, functions: list[str]) -> None:
        """While the target is halted between passes: what was collected goes, the tracepoints are the new plan's."""
        self.collected = Collected()
        self._stop = threading.Event()
        self._thread = self._worker = None
        self.setup_seconds = 0.0
        self.raw_path = log_dir / f"delve-raw-{self.label}.jsonl" if os.environ.get("ANNOTRACE_DELVE_RAW") else None
        started = time.monotonic()
        assert self.control is not None
        for breakpoint_id in self._breakpoint_ids:
            try:
                self.control.clear_breakpoint(breakpoint_id)
            except DelveRPCError as exc:
                raise ProbeFault(f"cannot clear a tracepoint in {self.process}: {exc}") from exc
        self._breakpoint_ids, self.breakpoints = [], 0
        self.setup_seconds += time.monotonic() - started
        self.trace(functions)

    # Tracepoints.

    def trace(self, functions: list[str]) -> None:
        """Tracepoints on entry and on every return of each function."""
        assert self.control is not None
        started = time.monotonic()
        values = VALUES.to_json()
        for function in functions:
            entry = {"functionName": function, "continue": True, "line": -1, "stacktrace": STACK_DEPTH,
                     "LoadArgs": values}
            try:
                self._breakpoint_ids.append(self.control.create_breakpoint(entry).get("id", 0))
                self.breakpoints += 1
                for address in self.control.function_return_locations(function):
                    created = self.control.create_breakpoint({"addr": address, "traceReturn": True, "line": -1,
                                                              "stacktrace": STACK_DEPTH, "LoadArgs": values,
                                                              "LoadLocals": values})
                    self._breakpoint_ids.append(created.get("id", 0))
                    self.breakpoints += 1
            except DelveRPCError as exc:
                if "already exists" not in str(exc):
                    raise ProbeFault(f"cannot set a tracepoint on {function} in {self.process}: {exc}") from exc
        self.setup_seconds += time.monotonic() - started

    # Collection.
    def start_collecting(self, matcher: SentinelMatcher, probe_pass: int, seq_lock: threading.Lock,
                         counter: list[int], started: float) -> None:
        """Continue the target hit after hit. A hit with text cut short by the load limits is
        translated at once, while the target is still stopped there, and the cut text is read in
        full from memory; every other hit is translated by a worker thread while the target runs on."""
        client = DelveClient(self.address, timeout=None)
        pending: queue.Queue = queue.Queue()

        def translate(thread: dict, seq: int, when: float, complete=None) -> Event:
            return thread_to_event(thread, self.process, seq, matcher, probe_pass, when, self.source_root,
                                   complete=complete)

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
                        if needs_completion(thread):
                            goroutine = thread.get("goroutineID", 0)
                            event = translate(thread, seq, when,
                                              complete=lambda scans: complete_values(client, goroutine, scans, matcher))
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


def needs_completion(thread: dict) -> bool:
    """True when a loaded string or text []byte was cut short, or a closure of containerd's code, or a
    map[string]string / []string, was cut by the load depth (a fast walk over what delve sent)."""
    info = thread.get("breakPointInfo") or {}
    stack = [*(info.get("arguments") or []), *(info.get("locals") or []), *(thread.get("ReturnValues") or [])]
    while stack:
        variable = stack.pop()
        children = variable.get("children") or []
        kind = variable.get("kind")
        length = variable.get("len", 0) or 0
        if kind == KIND_STRING:
            if length > len(variable.get("value", "")) and variable.get("base"):
                return True
            continue
        if kind in (KIND_SLICE, KIND_ARRAY) and variable.get("type", "").endswith("uint8"):
            if length > len(children) and (looks_like_json(children) or
                                           looks_like_text(bytes(int(c.get("value") or 0) & 0xFF for c in children))):
                return True
            continue
        if not children and length > 0:
            if kind == KIND_FUNC and str(variable.get("value") or "").startswith(RELOAD_CLOSURES_OF):
                return True
            if variable.get("type") in TEXT_CONTAINERS:
                return True
        stack.extend(children)
    return False


def complete_values(client: DelveClient, goroutine: int, scans: list[Scan], matcher: SentinelMatcher) -> None:
    """Read cut text from memory, and load cut closures and text containers again, deeper."""
    read_cut_values(client, scans, matcher)
    reload_cut_containers(client, goroutine, scans, matcher)


def reload_cut_containers(client: DelveClient, goroutine: int, scans: list[Scan], matcher: SentinelMatcher) -> None:
    """Load each cut closure (of containerd's code) or text container again alone, by type and address.

    `*(*"TYPE")(ADDR)` names it whatever its path (result parameters included). What the deeper load
    still cannot read stays unknown."""
    wanted = [(found, leaf) for found in scans for leaf in found.reload
              if leaf.cut is not None and (leaf.cut.content != "closure" or
                                           (leaf.closures and leaf.closures[-1].startswith(RELOAD_CLOSURES_OF)))]
    wanted.sort(key=lambda item: (item[1].cut.content != "closure", item[1].path.count(".")))
    for found, leaf in wanted[:RELOADS_PER_HIT]:
        assert leaf.cut is not None
        try:
            variable = client.eval(goroutine, 0, f'*(*"{leaf.vtype}")({leaf.vaddr:#x})', RELOAD)
        except DelveRPCError:
            continue  # stays unknown
        if leaf.cut.content == "closure":
            prefix, closures = leaf.path.rsplit("{", 1)[0], leaf.closures[:-1]
        else:
            prefix, closures = leaf.path, leaf.closures
        deeper = scan([variable], leaf.cut.where, matcher, prefix=prefix, closures=closures)
        found.unreadable.remove(leaf.cut)
        found.unreadable += deeper.unreadable
        found.sightings += [s for s in deeper.sightings if s not in found.sightings]
    for found in scans:
        found.reload = []


def read_memory(client: DelveClient, address: int, length: int) -> bytes:
    data = b""
    while len(data) < length:
        data += client.examine_memory(address + len(data), min(MEMORY_CHUNK, length - len(data)))
    return data


def read_cut_values(client: DelveClient, scans: list[Scan], matcher: SentinelMatcher) -> None:
    """Read each cut string or text []byte in full from the stopped target's memory and search it.

    Result parameters (~r0) included: the value's data pointer and length are in what delve
    loaded, so no expression has to name it. A read that fails leaves the value unknown."""
    for found in scans:
        for leaf in found.cut:
            assert leaf.cut is not None
            try:
                text = read_memory(client, leaf.address, leaf.length).decode(errors="replace")
            except DelveRPCError as exc:
                found.unreadable[found.unreadable.index(leaf.cut)] = replace(leaf.cut, reason="error",
                                                                             detail=str(exc)[:120])
                continue
            found.unreadable.remove(leaf.cut)
            # What the cut prefix showed is replaced by what the whole value holds.
            found.sightings = [s for s in found.sightings if s.path != leaf.path or s.exact]
            for match in matcher.find(text):
                sighting = Sighting(match.value, leaf.cut.where, leaf.path, match.kind, match.text, leaf.closures)
                if sighting not in found.sightings:
                    found.sightings.append(sighting)
        found.cut = []


__all__ = ["Collected", "DelveSession", "ProbeFault", "START_TIMEOUT", "daemon_pid"]
