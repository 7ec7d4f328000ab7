#!/usr/bin/env python3
"""How much does watching containerd cost? One sandbox, one image, three ways, side by side.

For the same scenario and the same function set (the resolved default probe plan):
  plain      ctr run with no debugger
  dlv-trace  `dlv trace --exec ctr -s 24 REGEX` on the client and `dlv trace -p PID` on
             the daemon (prints calls and returns with shallow arguments)
  annotrace  the delve backend: arguments, locals and return values loaded and searched,
             marshalled spec bytes loaded in full, stacks kept
Each mode runs --repeat times, interleaved (plain, dlv-trace, annotrace, plain, ...), and
the medians are compared as ratios. Wall time is measured from starting ctr to its exit;
the container runs `echo` and exits by itself in every mode.

    python3 benchmarks/delve_cost.py [--scenario seed-ctr-run] [--containerd v2.1.4] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.actions import StateReader, deliver, run_action  # noqa: E402
from harness.image.layout import write_layout  # noqa: E402
from harness.image.scenario import load_scenario  # noqa: E402
from harness.investigate import resolve_run_plan  # noqa: E402
from harness.probes.delve.backend import daemon_pid  # noqa: E402
from harness.probes.delve.run import delve_pass  # noqa: E402
from harness.sandbox import Registry, Sandbox  # noqa: E402
from harness.toolchain import build_containerd  # noqa: E402
from harness.toolchain.tools import delve_version, install_delve  # noqa: E402


class TraceRun:
    """`dlv trace --exec ctr ...` as the handle actions._drive expects."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log.open("ab"),
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def poll(self):
        return self.process.poll()

    def finish(self, line: str, timeout: float):
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line.encode())
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        self.process.wait(timeout=max(timeout, 240))
        return self.process.returncode, ""

    def abort(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


BENCH_CMD = ("/bin/echo", "annotrace-bench")


def regex_for(functions: list[str]) -> str:
    return "^(" + "|".join(re.escape(f) for f in functions) + ")$"


def run_dlv_trace(n: int, sandbox, scenario, sentinels, reference: str, dlv: Path, plan, work: Path,
                  lines: list[int]):
    """One `ctr run` with `dlv trace` on ctr and on the daemon; appends the lines it printed to `lines`."""
    log = work / f"dlv-trace-{n}.log"
    daemon_trace = subprocess.Popen([str(dlv), "trace", "-p", str(daemon_pid(sandbox)), "-s", "24",
                                     regex_for(plan.functions["containerd"])],
                                    stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(1.0)  # let it set its tracepoints before the client starts

    @contextlib.contextmanager
    def launch(command: list[str], env: dict[str, str]):
        yield TraceRun([str(dlv), "trace", "--exec", command[0], "-s", "24", regex_for(plan.functions["ctr"]),
                        "--", *command[1:]], env, log)

    try:
        return run_action(sandbox, scenario, sentinels, reference, f"bench-trace-{n}", work / f"trace-{n}", launch)
    finally:
        daemon_trace.send_signal(signal.SIGINT)  # dlv trace halts and detaches on SIGINT
        try:
            daemon_trace.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon_trace.kill()
        lines.append(len(log.read_text(errors="replace").splitlines()))


def timed(label: str, function):
    started = time.monotonic()
    result = function()
    return time.monotonic() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="seed-ctr-run")
    parser.add_argument("--containerd", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, captures) for inspection")
    args = parser.parse_args()

    scenario = load_scenario(args.scenario)
    # The default command waits on stdin so records can be read; `dlv trace` keeps the
    # target's stdin to itself, so every mode here runs a command that exits on its own.
    scenario = dataclasses.replace(scenario, image=dataclasses.replace(scenario.image, cmd=BENCH_CMD))
    build = build_containerd(args.containerd or scenario.containerd or "v2.1.4")
    dlv = install_delve()
    plan = resolve_run_plan(build, scenario, ())
    sentinels = scenario.sentinels()
    work = Path(tempfile.mkdtemp(prefix="annotrace-bench-", dir="/var/tmp"))
    samples: dict[str, list[float]] = {"plain": [], "dlv-trace": [], "annotrace": []}
    captured: dict[str, list[int]] = {"dlv-trace": [], "annotrace": []}

    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, True)
        registry = stack.enter_context(Registry(work)) if scenario.image.delivery == "registry" else None
        sandbox = stack.enter_context(Sandbox(build, work, namespace="annotrace-bench"))
        layout = write_layout(scenario, sentinels, work / "layout", registry.host if registry else "")
        reference = deliver(sandbox, scenario, layout, registry)
        StateReader(sandbox)  # builds the helper outside the timed part

        def plain(n: int):
            return run_action(sandbox, scenario, sentinels, reference, f"bench-plain-{n}", work / f"plain-{n}")

        def dlv_trace(n: int):
            return run_dlv_trace(n, sandbox, scenario, sentinels, reference, dlv, plan, work, captured["dlv-trace"])

        def annotrace(n: int):
            result = delve_pass(n, sandbox, scenario, sentinels, reference, f"bench-annotrace-{n}",
                                work / f"annotrace-{n}", dlv, plan, str(build.src_dir))
            if result.faults:
                raise SystemExit(f"annotrace pass faulted: {result.faults}")
            captured["annotrace"].append(len(result.events))
            return result

        for n in range(1, args.repeat + 1):
            for mode, run in (("plain", plain), ("dlv-trace", dlv_trace), ("annotrace", annotrace)):
                seconds, _ = timed(mode, lambda: run(n))
                samples[mode].append(seconds)
                print(f"run {n} {mode}: {seconds:.2f}s", file=sys.stderr)

    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    report = {
        "scenario": scenario.name, "containerd": build.version, "delve": delve_version(dlv),
        "functions": {p: len(f) for p, f in plan.functions.items()}, "repeat": args.repeat,
        "seconds": samples, "median_seconds": medians,
        "ratios": {
            "dlv-trace / plain": medians["dlv-trace"] / medians["plain"],
            "annotrace / plain": medians["annotrace"] / medians["plain"],
            "annotrace / dlv-trace": medians["annotrace"] / medians["dlv-trace"],
        },
        "captured": {"dlv-trace output lines": captured["dlv-trace"], "annotrace events": captured["annotrace"]},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{scenario.name} on containerd {build.version}, {sum(report['functions'].values())} functions, "
              f"median of {args.repeat}:")
        for mode in samples:
            print(f"  {mode:10s} {medians[mode]:6.2f}s")
        for name, ratio in report["ratios"].items():
            print(f"  {name:22s} {ratio:5.2f}x")
        print(f"  captured: dlv trace printed {report['captured']['dlv-trace output lines']} lines per run "
              f"(call lines with shallow arguments, plus stacks); annotrace kept {report['captured']['annotrace events']} "
              "events per run, each with arguments, locals at return, results, stack and sentinel paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
