"""The gdb backend: gdb driven over GDB/MI (pygdbmi), on ctr (exec) and on the daemon (attach).

A GdbSession has DelveSession's interface, so one probe pass (harness/probes/passes.py)
drives either debugger. gdb loads Go's runtime-gdb.py (map layouts) and our
gdbprobe.py, which sets the tracepoints and reports each hit as a console record
`annotrace-hit {json}` while the target runs on. Every MI record gdb sends is kept in
`gdb-<label>.mi.jsonl` beside the pass's other logs (the unit tests' fixtures are such
recordings).

What gdb does not know about Go comes from the dwarfinfo helper: which formal
parameters are results, and the DWARF type behind each runtime type descriptor
(interface values). A value gdb cannot read is unknown, never absent.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

from harness.console import warn
from harness.errors import HarnessError
from harness.probes.session import START_TIMEOUT, Collected, DebuggerSession, ProbeFault
from harness.probes.events import Event, Frame, Sighting, Unreadable, relative_path
from harness.toolchain.gocmd import go_query

PROBE_SCRIPT = Path(__file__).resolve().parent / "gdbprobe.py"
HIT_PREFIX = "annotrace-hit "
ARMED_PREFIX = "annotrace-armed "
ERROR_PREFIX = "annotrace-error "
# Signals Go programs use for themselves: gdb must pass them on without stopping.
QUIET_SIGNALS = ("SIGURG", "SIGPIPE", "SIGCHLD", "SIGPROF", "SIGWINCH", "SIGUSR1", "SIGUSR2", "SIGTERM")
EXITED = ("exited-normally", "exited", "exited-signalled")


def runtime_gdb_script() -> Path | None:
    """Go's own gdb support script, from the installed toolchain (None when absent)."""
    proc = go_query(["env", "GOROOT"])
    path = Path(proc.stdout.strip()) / "src" / "runtime" / "runtime-gdb.py"
    return path if proc.returncode == 0 and path.is_file() else None


def mi_quote(text: str) -> str:
    """An MI c-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def record_to_event(record: dict, process: str, seq: int, probe_pass: int, when: float,
                    source_root: str = "") -> Event:
    """One `annotrace-hit` record (what gdbprobe.py wrote) -> one event."""
    stack = [Frame(function, relative_path(file, source_root), line) for function, file, line in record["stack"]]
    return Event(
        seq=seq,
        process=process,
        kind=record["kind"],
        function=record["function"],
        file=relative_path(record["file"], source_root),
        line=record["line"],
        goroutine=record["goroutine"],
        stack=stack,
        sightings=list(dict.fromkeys(Sighting(s["value"], s["where"], s["path"]) for s in record["sightings"])),
        unreadable=[Unreadable(**u) for u in record["unreadable"]],
        result_types=list(record.get("result_types") or []),
        probe_pass=probe_pass,
        time=when,
        backend="gdb",
    )


def console_lines(records: list[dict], pending: str = "") -> tuple[list[str], str]:
    """Whole console lines from MI console stream records (gdb may split one line over several)."""
    text = pending + "".join(r.get("payload") or "" for r in records if r.get("type") == "console")
    *lines, rest = text.split("\n")
    return lines, rest


def exit_status(record: dict) -> int | None:
    """The exit code of a `*stopped,reason="exited..."` record (MI gives it in octal)."""
    payload = record.get("payload") or {}
    if payload.get("reason") == "exited-normally":
        return 0
    if "exit-code" in payload:
        return int(payload["exit-code"], 8)
    return None


class GdbSession(DebuggerSession):
    """`with GdbSession(...) as session:` one gdb, MI on its stdin/stdout, for one target."""

    DEBUGGER = "gdb"

    def __init__(self, gdb: Path, process: str, work_dir: Path, log_dir: Path, *, exec_argv: list[str] | None = None,
                 attach_pid: int | None = None, env: dict[str, str] | None = None, source_root: str = "",
                 label: str | None = None, sentinels: list[str] = (), dwarf: dict | None = None) -> None:
        if (exec_argv is None) == (attach_pid is None):
            raise ValueError("give exactly one of exec_argv and attach_pid")
        self.gdb = gdb
        self.process = process
        label = label or process
        self.label = label
        self.work_dir = work_dir
        self.log_path = log_dir / f"gdb-{label}.mi.jsonl"
        self.output_path = log_dir / f"gdb-{label}.out"
        self.exec_argv = exec_argv
        self.attach_pid = attach_pid
        self.env = env
        self.source_root = source_root
        self.sentinels = list(sentinels)
        self.dwarf = (dwarf or {}).get(process) or {"functions": {}, "types": {}}  # per process, see dwarf_info
        self.controller = None
        self.collected = Collected()
        self.breakpoints = 0
        self.setup_seconds = 0.0
        self.failed: dict[str, str] = {}
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stdin_fd: int | None = None
        self._fifo: Path | None = None
        self._pending = ""
        self._interrupted = threading.Event()
        self._log = None

    # Life cycle.
    def __enter__(self) -> GdbSession:
        from pygdbmi.gdbcontroller import GdbController

        started = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a")
        binary = self.exec_argv[0] if self.exec_argv else os.readlink(f"/proc/{self.attach_pid}/exe")
        command = [str(self.gdb), "--nx", "--quiet", "--interpreter=mi3", binary]
        if self.env is not None:  # the exec'd target inherits gdb's environment
            command = ["env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *command]
        self.controller = GdbController(command=command, time_to_check_for_additional_output_sec=0.05)
        try:
            # mi-async: gdb keeps reading commands (-exec-interrupt) while the target runs.
            for command in ("-gdb-set mi-async on", "-gdb-set pagination off", "-gdb-set confirm off",
                            "-gdb-set width 0", "-gdb-set print thread-events off", "-gdb-set non-stop off"):
                self._command(command)
            for signal in QUIET_SIGNALS:
                self._command(f'-interpreter-exec console {mi_quote(f"handle {signal} nostop noprint pass")}')
            script = runtime_gdb_script()
            if script is not None:
                self._command(f"-interpreter-exec console {mi_quote(f'source {script}')}")
            self._command(f"-interpreter-exec console {mi_quote(f'source {PROBE_SCRIPT}')}")
            if self.attach_pid is not None:
                self._command(f"-target-attach {self.attach_pid}", timeout=START_TIMEOUT)
            else:
                self._prepare_exec()
            self.setup_seconds += time.monotonic() - started
        except BaseException:
            self._quit(kill_target=True)
            raise
        return self

    def _prepare_exec(self) -> None:
        """Arguments through the shell gdb starts the target with: stdin from a FIFO the harness writes."""
        self._fifo = self.work_dir / f"gdb-{self.label}.stdin"
        if self._fifo.exists():
            self._fifo.unlink()
        os.mkfifo(self._fifo, 0o600)
        # Read-write, so neither side blocks on open; closing it gives the target EOF.
        self._stdin_fd = os.open(self._fifo, os.O_RDWR | os.O_NONBLOCK)
        arguments = " ".join(shlex.quote(a) for a in self.exec_argv[1:])
        redirect = f" < {shlex.quote(str(self._fifo))} > {shlex.quote(str(self.output_path))} 2>&1"
        # `set args` takes the line as the shell will see it (-exec-arguments would quote the redirections).
        self._command(f"-interpreter-exec console {mi_quote('set args ' + arguments + redirect)}")

    def __exit__(self, *exc_info) -> None:
        self._quit(kill_target=self.exec_argv is not None)

    def _quit(self, kill_target: bool) -> None:
        self._stop.set()
        if self.controller is not None:
            try:
                if self._thread is not None and self._thread.is_alive():
                    self._interrupt()
                    self._thread.join(5.0)
                if kill_target:
                    self._command("-interpreter-exec console \"kill\"", timeout=10, check=False)
                else:
                    self._command("-target-detach", timeout=10, check=False)
                self._write("-gdb-exit")
            except (HarnessError, OSError, ValueError):
                pass
            try:
                self.controller.exit()
            except Exception:  # noqa: BLE001 - the process is going away either way
                pass
            self.controller = None
        if self._thread is not None:
            self._thread.join(5.0)
        self._close_stdin()
        if self._fifo is not None and self._fifo.exists():
            self._fifo.unlink()
        if self._log is not None:
            self._log.close()
            self._log = None

    # MI plumbing.
    def _write(self, command: str) -> None:
        assert self.controller is not None
        with self._write_lock:
            self.controller.write(command, read_response=False)

    def _record(self, records: list[dict]) -> None:
        if self._log is not None:
            for record in records:
                self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    def _command(self, command: str, timeout: float = 30.0, check: bool = True) -> list[dict]:
        """Send one MI command and read until its result record (before the collector runs)."""
        assert self.controller is not None
        self._write(command)
        deadline = time.monotonic() + timeout
        got: list[dict] = []
        while time.monotonic() < deadline:
            records = self.controller.get_gdb_response(timeout_sec=0.2, raise_error_on_timeout=False)
            self._record(records)
            got += records
            for record in records:
                if record.get("type") == "result":
                    if check and record.get("message") == "error":
                        message = (record.get("payload") or {}).get("msg", "?")
                        raise ProbeFault(f"gdb on {self.process}: `{command[:80]}` failed: {message}")
                    return got
        if check:
            raise ProbeFault(f"gdb on {self.process} did not answer `{command[:80]}` within {timeout:.0f}s; "
                             f"see {self.log_path}")
        return got

    def _interrupt(self) -> None:
        self._interrupted.set()
        try:
            self._write("-exec-interrupt")
        except (OSError, ValueError):
            pass

    # Tracepoints.
    def trace(self, functions: list[str]) -> None:
        """Tracepoints on entry and on every RET of each function (gdbprobe.annotrace_arm)."""
        started = time.monotonic()
        dwarf = self.dwarf
        config = {
            "sentinels": self.sentinels,
            "functions": {f: [p["name"] for p in dwarf["functions"].get(f, []) if p["result"]] for f in functions},
            "types": dwarf["types"],
        }
        config_path = self.log_path.parent / f"gdb-{self.label}.config.json"
        config_path.write_text(json.dumps(config))
        records = self._command(f"-interpreter-exec console {mi_quote(f'python annotrace_arm({str(config_path)!r})')}",
                                timeout=120)
        lines, _ = console_lines(records)
        armed = next((json.loads(line[len(ARMED_PREFIX):]) for line in lines if line.startswith(ARMED_PREFIX)), None)
        if armed is None:
            raise ProbeFault(f"gdb on {self.process} did not set its tracepoints; see {self.log_path}")
        self.breakpoints = armed["breakpoints"]
        self.failed = armed["failed"]
        if self.failed:
            warn(f"gdb on {self.process}: no tracepoint on {', '.join(sorted(self.failed))}")
        self.setup_seconds += time.monotonic() - started

    # Collection.
    def start_collecting(self, matcher, probe_pass: int, seq_lock: threading.Lock,
                         counter: list[int], started: float) -> None:
        """Run (exec) or continue (attach) the target; a reader thread turns console hits into events.

        gdbprobe.py searches for the sentinels given at construction (exact matches), not `matcher`."""
        assert self.controller is not None

        def loop() -> None:
            try:
                while not self._stop.is_set() or self._interrupted.is_set():
                    records = self.controller.get_gdb_response(timeout_sec=0.1, raise_error_on_timeout=False)
                    if not records:
                        if self.controller.gdb_process.poll() is not None:
                            self.collected.fault = self.collected.fault or "gdb exited"
                            return
                        continue
                    self._record(records)
                    waited = time.monotonic()
                    lines, self._pending = console_lines(records, self._pending)
                    for line in lines:
                        if line.startswith(HIT_PREFIX):
                            with seq_lock:
                                counter[0] += 1
                                seq = counter[0]
                            self.collected.hits += 1
                            record = json.loads(line[len(HIT_PREFIX):])
                            when = round(time.monotonic() - started, 6)
                            self.collected.events.append(
                                record_to_event(record, self.process, seq, probe_pass, when, self.source_root))
                        elif line.startswith(ERROR_PREFIX):
                            self.collected.fault = self.collected.fault or f"reading a hit failed: {line}"
                    self.collected.translate_seconds += time.monotonic() - waited
                    for record in records:
                        if record.get("type") != "notify" or record.get("message") != "stopped":
                            continue
                        reason = (record.get("payload") or {}).get("reason", "")
                        if reason in EXITED:
                            self.collected.exited = True
                            self.collected.exit_status = exit_status(record)
                            return
                        if self._interrupted.is_set():
                            return  # stopped because we asked: the caller detaches
                        # A signal gdb was not told to pass quietly: let the target have it.
                        self._write("-exec-continue")
            except Exception as exc:  # noqa: BLE001 - recorded; the verdict becomes incomplete
                self.collected.fault = self.collected.fault or f"collector failed: {exc!r}"

        self._thread = threading.Thread(target=loop, name=f"gdb-{self.process}", daemon=True)
        self._thread.start()
        self._write("-exec-run" if self.exec_argv is not None else "-exec-continue")

    def write_stdin(self, text: str) -> None:
        if self._stdin_fd is not None:
            try:
                os.write(self._stdin_fd, text.encode())
            except OSError:
                pass
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self._stdin_fd is not None:
            try:
                os.close(self._stdin_fd)
            except OSError:
                pass
            self._stdin_fd = None

    def stop_collecting(self) -> None:
        """Interrupt the target so the reader sees it stop; the exit detaches (attach) or kills (exec)."""
        self._stop.set()
        if self._thread is None or not self._thread.is_alive():
            return
        self._interrupt()
        self._thread.join(10.0)
        if self._thread.is_alive():
            self.collected.fault = self.collected.fault or f"gdb on {self.process} did not stop when interrupted"


def dwarf_info(binary: Path, functions: list[str]) -> dict:
    """What gdb cannot tell about Go from the binary's DWARF (the dwarfinfo helper)."""
    from harness.toolchain.tools import build_dwarfinfo

    helper = build_dwarfinfo()
    cache = binary.parent / f".{binary.name}.dwarfinfo.json"
    if cache.is_file() and cache.stat().st_mtime >= binary.stat().st_mtime:
        known = json.loads(cache.read_text())
        if all(f in known["functions"] or f in known["missing"] for f in functions):
            return known
    proc = subprocess.run([str(helper), str(binary), *functions], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"dwarfinfo failed on {binary}")
    data = json.loads(proc.stdout)
    cache.write_text(json.dumps(data))
    return data


__all__ = ["GdbSession", "dwarf_info", "exit_status", "record_to_event"]
