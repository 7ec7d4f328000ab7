#!/usr/bin/env python3
"""What does each probe backend cost? Plain ctr run, dlv trace, delve, gdb and gotrace side by side.

For the same scenario and function set (the resolved default probe plan), in one run:
  plain      ctr run with no probes (the plain debug build)
  dlv-trace  `dlv trace` on ctr and on the daemon (see delve_cost.py)
  delve      the delve backend's probe pass
  gdb        the gdb backend's probe pass
  gotrace    the gotrace backend's probe pass: the instrumented build, execution traces on in
             ctr and the daemon, the trace files read back into events
plain, dlv-trace, delve and gdb share one sandbox on the plain build; gotrace runs in a
second sandbox on the instrumented build, started at the same time. Modes are interleaved
(plain, dlv-trace, delve, gdb, gotrace, plain, ...) --repeat times; medians are compared
as ratios to plain. Wall time runs from starting ctr until the events are in hand (for
gotrace that includes finishing the daemon's trace and reading both trace files). The
container runs `echo` and exits by itself in every mode. Building (plain and instrumented)
happens before anything is timed.

    python3 benchmarks/backend_cost.py [--scenario seed-ctr-run] [--containerd v2.1.4] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from delve_cost import BENCH_CMD, run_dlv_trace  # noqa: E402

from harness.actions import StateReader, deliver, run_action  # noqa: E402
from harness.image.layout import write_layout  # noqa: E402
from harness.image.scenario import load_scenario  # noqa: E402
from harness.investigate import resolve_run_plan  # noqa: E402
from harness.probes.delve.run import delve_pass  # noqa: E402
from harness.probes.gdb.session import GdbSession, dwarf_info  # noqa: E402
from harness.probes.gotrace.build import build_instrumented  # noqa: E402
from harness.probes.gotrace.run import gotrace_pass, trace_dir_for, trace_env  # noqa: E402
from harness.probes.passes import debugger_pass  # noqa: E402
from harness.probes.plan import PROCESSES  # noqa: E402
from harness.sandbox import Registry, Sandbox  # noqa: E402
from harness.toolchain import build_containerd  # noqa: E402
from harness.toolchain.tools import delve_version, gdb_version, install_delve, install_gdb  # noqa: E402

MODES = ("plain", "dlv-trace", "delve", "gdb", "gotrace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="seed-ctr-run")
    parser.add_argument("--containerd", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, traces) for inspection")
    parser.add_argument("--modes", default=",".join(MODES), help=f"which of {','.join(MODES)} (plain always runs)")
    args = parser.parse_args()
    modes = ["plain", *(m for m in MODES if m in args.modes.split(",") and m != "plain")]

    scenario = load_scenario(args.scenario)
    scenario = dataclasses.replace(scenario, image=dataclasses.replace(scenario.image, cmd=BENCH_CMD))
    build = build_containerd(args.containerd or scenario.containerd or "v2.1.4")
    dlv, gdb = install_delve(), install_gdb()
    plan = resolve_run_plan(build, scenario, ())
    instrumented = build_instrumented(build, plan)
    dwarf = {p: dwarf_info(build.binary(p), plan.functions[p]) for p in PROCESSES}
    sentinels = scenario.sentinels()
    values = [s.value for s in sentinels]
    work = Path(tempfile.mkdtemp(prefix="annotrace-bench-", dir="/var/tmp"))
    (work / "gotrace").mkdir()
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    captured: dict[str, list[int]] = {mode: [] for mode in modes if mode != "plain"}
    breakdown: list[dict] = []  # gotrace: seconds in the action, finishing the daemon's trace, reading

    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, True)
        registry = stack.enter_context(Registry(work)) if scenario.image.delivery == "registry" else None
        sandbox = stack.enter_context(Sandbox(build, work, namespace="annotrace-bench"))
        traced = stack.enter_context(Sandbox(instrumented, work / "gotrace", namespace="annotrace-bench-gotrace",
                                             daemon_env=trace_env(trace_dir_for(work / "gotrace"), sentinels)))
        layout = write_layout(scenario, sentinels, work / "layout", registry.host if registry else "")
        reference = deliver(sandbox, scenario, layout, registry)
        traced_reference = deliver(traced, scenario, layout, registry)
        StateReader(sandbox)  # builds the helper outside the timed part

        def plain(n: int):
            return run_action(sandbox, scenario, sentinels, reference, f"bench-plain-{n}", work / f"plain-{n}")

        def dlv_trace(n: int):
            return run_dlv_trace(n, sandbox, scenario, sentinels, reference, dlv, plan, work, captured["dlv-trace"])

        def checked(mode: str, result):
            if result.faults:
                raise SystemExit(f"{mode} pass faulted: {result.faults}")
            captured[mode].append(len(result.events))
            return result

        def delve(n: int):
            return checked("delve", delve_pass(n, sandbox, scenario, sentinels, reference, f"bench-delve-{n}",
                                               work / f"delve-{n}", dlv, plan, str(build.src_dir)))

        def gdb_mode(n: int):
            return checked("gdb", debugger_pass(GdbSession, n, sandbox, scenario, sentinels, reference,
                                                f"bench-gdb-{n}", work / f"gdb-{n}", gdb, plan, str(build.src_dir),
                                                session_options={"sentinels": values, "dwarf": dwarf}))

        def gotrace(n: int):
            result = checked("gotrace", gotrace_pass(n, traced, scenario, sentinels, traced_reference,
                                                     f"bench-gotrace-{n}", work / f"gotrace-{n}", plan,
                                                     str(instrumented.src_dir)))
            breakdown.append(result.costs["trace"]["seconds"])
            return result

        runs = {"plain": plain, "dlv-trace": dlv_trace, "delve": delve, "gdb": gdb_mode, "gotrace": gotrace}
        for n in range(1, args.repeat + 1):
            for mode in modes:
                started = time.monotonic()
                runs[mode](n)
                samples[mode].append(time.monotonic() - started)
                print(f"run {n} {mode}: {samples[mode][-1]:.2f}s", file=sys.stderr)

    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    report = {
        "scenario": scenario.name, "containerd": build.version, "delve": delve_version(dlv), "gdb": gdb_version(gdb),
        "functions": {p: len(f) for p, f in plan.functions.items()}, "repeat": args.repeat,
        "seconds": samples, "median_seconds": medians,
        "ratios_to_plain": {mode: medians[mode] / medians["plain"] for mode in modes},
        "captured_events": captured,
        "instrumented_build_seconds": instrumented.manifest["instrumented"]["build_seconds"],
        "gotrace_breakdown_seconds": breakdown,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{scenario.name} on containerd {build.version}, {sum(report['functions'].values())} functions, "
              f"median of {args.repeat} (wall time of one probed `ctr run`, events in hand):")
        print(f"  {'mode':10s} {'seconds':>8s} {'x plain':>8s}  events per run")
        for mode in modes:
            events = captured.get(mode)
            shown = "-" if events is None else ",".join(map(str, events))
            label = "lines" if mode == "dlv-trace" else "events"
            print(f"  {mode:10s} {medians[mode]:8.2f} {report['ratios_to_plain'][mode]:7.2f}x  "
                  f"{shown}{'' if events is None else ' ' + label}")
        if breakdown:
            print("  gotrace, per run: " + "; ".join(", ".join(f"{k} {v:.3f}s" for k, v in b.items()) for b in breakdown))
        print(f"  (the instrumented build took {report['instrumented_build_seconds']}s once, cached after that)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
