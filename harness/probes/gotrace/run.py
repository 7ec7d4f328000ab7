"""One probe pass with the gotrace backend: instrumented binaries, runtime/trace, the common events.

The sandboxed daemon was started from the instrumented build with ANNOTRACE_TRACE_DIR
and ANNOTRACE_SENTINELS set (see trace_env), so it writes an execution trace from its
start; ctr gets the same variables and writes its own. An instrumented function opens
a trace region per call and logs a small JSON payload at entry and at every return:
the sentinels it found in its arguments, locals and results, and what it could not
read. After the action, SIGUSR2 makes the daemon finish its trace file (and start the
next one, for the next pass); the `readtrace` helper (golang.org/x/exp/trace) turns the
files into JSON lines, and this module into events.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from harness.actions import plain_launcher, run_action
from harness.console import step
from harness.errors import HarnessError
from harness.probes.events import Event, Frame, Sighting, Unreadable, relative_path
from harness.probes.passes import PassResult
from harness.probes.plan import ResolvedPlan

ROTATE_TIMEOUT = 30.0
CATEGORY = "annotrace"


def trace_env(trace_dir: Path, sentinels) -> dict[str, str]:
    """What makes an instrumented binary trace (both ctr and the daemon get it)."""
    return {"ANNOTRACE_TRACE_DIR": str(trace_dir),
            "ANNOTRACE_SENTINELS": json.dumps([s.value for s in sentinels])}


def trace_dir_for(results_dir: Path) -> Path:
    path = results_dir / "traces"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _finished(trace_dir: Path) -> set[Path]:
    return set(trace_dir.glob("*.trace"))


def rotate_daemon_trace(sandbox, trace_dir: Path) -> Path:
    """Ask the daemon to finish its current trace file (and start the next); wait until it is *.trace."""
    assert sandbox.daemon is not None
    pid = sandbox.daemon.pid
    before = _finished(trace_dir)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + ROTATE_TIMEOUT
    while time.monotonic() < deadline:
        new = [p for p in _finished(trace_dir) - before if p.name.startswith(f"containerd-{pid}-")]
        if new:
            return new[0]
        time.sleep(0.005)
    raise HarnessError(f"the instrumented daemon did not finish its trace within {ROTATE_TIMEOUT:.0f}s "
                       f"(pid {pid}); see {trace_dir}")


def read_traces(files: list[Path]) -> list[dict]:
    """JSON lines from the readtrace helper: one per `annotrace` log event, then a summary."""
    from harness.probes.gotrace.build import GO_SOURCE
    from harness.toolchain.tools import build_go_tool

    if not files:
        return []
    reader = build_go_tool("gotrace", GO_SOURCE, "./cmd/readtrace")
    # One reader per file, side by side, so each entry knows which process wrote it.
    running = [(path, subprocess.Popen([str(reader), str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)) for path in files]
    entries: list[dict] = []
    failed = []
    for path, proc in running:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            failed.append(f"reading the execution trace {path.name} failed: "
                          f"{(stderr.strip().splitlines() or ['no output'])[-1]}")
            continue
        entries += [{**json.loads(line), "file": path.name} for line in stdout.splitlines() if line.strip()]
    if failed:
        raise HarnessError(failed[0])
    return entries


def process_of(trace_file: str) -> str:
    """`ctr-123-0.trace` -> ctr; `containerd-45-1.trace` -> containerd."""
    return Path(trace_file).name.rsplit("-", 2)[0]


def log_to_event(entry: dict, process: str, seq: int, probe_pass: int, started_ns: int,
                 source_root: str = "") -> Event:
    """One log event of an instrumented function (as readtrace prints it) -> one event."""
    payload = json.loads(entry["message"])
    stack = [Frame(f["function"], relative_path(f["file"], source_root), f["line"]) for f in entry["stack"]]
    # The rewrite adds no line, so the trace's lines are the source's; the payload says
    # which statement (the function's opening line, or the return statement) logged.
    if stack:
        stack[0] = Frame(stack[0].function, payload["file"], payload["line"])
    return Event(
        seq=seq,
        process=process,
        kind=payload["k"],
        function=payload["f"],
        file=payload["file"],
        line=payload["line"],
        goroutine=entry["goroutine"],
        stack=stack,
        sightings=list(dict.fromkeys(Sighting(s["v"], s["w"], s["p"]) for s in payload.get("s") or [])),
        unreadable=[Unreadable(**u) for u in payload.get("u") or []],
        probe_pass=probe_pass,
        time=round((entry["time_ns"] - started_ns) / 1e9, 6),
        backend="gotrace",
    )


def trace_events(entries: list[dict], plan: ResolvedPlan, probe_pass: int, seq_start: int,
                 source_root: str = "") -> tuple[list[Event], dict]:
    """Events of the plan's functions, in time order across the files; and the readtrace summary.

    A function is instrumented in the source both binaries share: events of a function the
    plan does not watch in that process are left out, as a debugger would not see them.
    """
    logs = [e for e in entries if "message" in e]
    summary = {"regions": 0, "logs": 0}
    for entry in entries:
        for key in summary:
            summary[key] += (entry.get("summary") or {}).get(key) or 0
    logs.sort(key=lambda e: e["time_ns"])
    started = logs[0]["time_ns"] if logs else 0
    events = []
    for entry in logs:
        process = process_of(entry["file"])
        event = log_to_event(entry, process, seq_start + len(events) + 1, probe_pass, started, source_root)
        if event.function in plan.functions.get(process, ()):
            events.append(event)
    return events, summary


def gotrace_pass(index: int, sandbox, scenario, sentinels, reference: str, container_id: str, state_dir: Path,
                 plan: ResolvedPlan, source_root: str, seq_start: int = 0) -> PassResult:
    """Run the action once with tracing on in ctr; collect this pass's trace files; faults recorded."""
    result = PassResult(index, functions=plan.functions)
    started = time.monotonic()
    trace_dir = trace_dir_for(sandbox.results_dir)
    # What the daemon traced before this pass (start-up, the image pull, earlier passes) goes
    # to its own file, kept for `go tool trace` but not read: the pass reads only its own.
    try:
        rotate_daemon_trace(sandbox, trace_dir)
    except HarnessError as exc:
        result.faults.append(str(exc))
        return result
    before = _finished(trace_dir)
    env = trace_env(trace_dir, sentinels)
    step(f"probe pass {index}: gotrace (instrumented ctr and containerd, {plan.count()} functions, "
         f"execution traces in {trace_dir})")

    def launch(command: list[str], base_env: dict[str, str]):
        return plain_launcher(command, {**base_env, **env})

    timing = {}
    mark = time.monotonic()
    try:
        result.action = run_action(sandbox, scenario, sentinels, reference, container_id, state_dir, launch)
    except HarnessError as exc:
        result.faults.append(str(exc))
    timing["action"], mark = round(time.monotonic() - mark, 3), time.monotonic()
    try:
        rotate_daemon_trace(sandbox, trace_dir)
        timing["rotate"], mark = round(time.monotonic() - mark, 3), time.monotonic()
        files = sorted(_finished(trace_dir) - before)
        entries = read_traces(files)
        timing["read"] = round(time.monotonic() - mark, 3)
        events, summary = trace_events(entries, plan, index, seq_start, source_root)
        result.events = events
        for process in plan.functions:
            result.hits[process] = sum(1 for e in events if e.process == process)
            result.breakpoints[process] = len(plan.functions[process])
        result.costs["trace"] = {"files": [f.name for f in files], "regions": summary.get("regions"),
                                 "logs": summary.get("logs"), "bytes": sum(f.stat().st_size for f in files),
                                 "seconds": timing}
        if not any(f.name.startswith("ctr-") for f in files):
            result.faults.append("ctr wrote no finished execution trace (did it exit before main returned?)")
    except HarnessError as exc:
        result.faults.append(str(exc))
    result.seconds = time.monotonic() - started
    return result


__all__ = ["gotrace_pass", "log_to_event", "trace_env", "trace_events"]
