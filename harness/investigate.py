"""Probe passes, refinement and the verdict: where each sentinel was dropped.

Pass 1 runs the scenario with the probe plan. If a sentinel vanished inside code
the plan did not watch (the drop candidate calls functions nobody probed, or the
value was never seen at all), the next pass adds probes on the functions reachable
from that frontier (delve's static call list of the binary, and the callers seen
on stacks) and runs again, until one function is pinned or there is nothing left
to add. Each pass is a whole real run; the verdict comes from the last one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.console import step, warn
from harness.errors import HarnessError
from harness.graph.callgraph import build_graph
from harness.graph.localize import Localization, localize
from harness.probes.delve.backend import DelveSession
from harness.probes.delve.run import delve_pass
from harness.probes.passes import PassResult
from harness.probes.events import Event, write_events
from harness.probes.plan import PROCESSES, ProbePlan, ResolvedPlan, binary_functions, default_plan, parse_probe_option, resolve_plan
from harness.stagemap import load_documents, stage_map
from harness.versions import layout_for_module

MAX_NEW_PROBES = 40


def resolve_run_plan(build, scenario, extra_probes: tuple[str, ...], only: bool = False) -> ResolvedPlan:
    """The default plan for the build's layout (or none with `only`), plus scenario and --probe patterns."""
    layout = layout_for_module(build.module)
    plan = ProbePlan() if only else default_plan(layout)
    for process, patterns in scenario.probes.items():
        for pattern in patterns:
            plan.add(process, pattern)
    for option in extra_probes:
        parse_probe_option(plan, option)
    functions = {p: binary_functions(build.binary(p)) for p in PROCESSES}
    return resolve_plan(plan, functions)


def _in_scope(function: str, module: str) -> bool:
    """Functions of containerd itself (not the runtime, not vendored libraries, no compiler wrappers)."""
    if not (function.startswith(module + "/") or function.startswith(module + ".")):
        return False
    if "/annotraceprobe." in function:  # the gotrace backend's own probe package
        return False
    return not re.search(r"\.(gowrap|deferwrap)\d+$|-fm$|\.init(\.\d+)?$", function)


@dataclass
class ProbeOutcome:
    passes: list[PassResult]
    localizations: dict[str, Localization]
    events: list[Event]  # of the last pass
    plan: ResolvedPlan
    graph: object
    refinement: list[dict] = field(default_factory=list)
    transcript: Path | None = None

    @property
    def action(self):
        return self.passes[0].action if self.passes else None

    @property
    def faults(self) -> list[str]:
        return [f for p in self.passes for f in p.faults]

    def summary(self) -> dict:
        return {
            "passes": [p.to_dict() for p in self.passes],
            "refinement": self.refinement,
            "faults": self.faults,
            "complete": not self.faults,
            "transcript": self.transcript.name if self.transcript else None,
        }

    def fill(self, sentinel_docs: list[dict], passes: int | None = None) -> None:
        """Put the verdict of each sentinel into its --json entry (`passes`: when re-rendering)."""
        passes = passes if passes is not None else len(self.passes)
        for doc in sentinel_docs:
            loc = self.localizations.get(doc["value"])
            if loc is None:
                continue
            doc["verdict"] = loc.status
            doc["localization"] = localization_doc(loc, passes)
            drop = loc.drop
            if drop is not None:
                doc["drop"] = {
                    "function": drop.function,
                    "file": drop.file,
                    "line": drop.line,
                    "process": drop.process,
                    "evidence": drop.evidence(f'{doc["key"]}={doc["value"]}'),
                    "call_paths": drop.call_paths,
                }

    def write_report(self, document: dict, results_dir: Path) -> None:
        from harness.report.markdown import write_report

        write_report(document, results_dir, self.graph)


def localization_doc(loc: Localization, passes: int) -> dict:
    return {
        "status": loc.status,
        "first_seen": loc.first_seen,
        "last_carriers": loc.last_carriers,
        "unknown": loc.unknown,
        "passes": passes,
        "candidates": [
            {"function": c.function, "process": c.process, "file": c.file, "line": c.line,
             "invocations": len(c.invocations), "call_paths": c.call_paths, "reasons": c.reasons,
             "evidence": [g for h in c.invocations for g in h.got][:6]}
            for c in loc.candidates
        ],
    }


def localize_all(sentinels: list, events: list[Event], reached: dict[str, bool | None], layout,
                 faults: list[str]) -> dict[str, Localization]:
    """A localization per sentinel, from one pass's events and the stage map's runtime column."""
    fault = "; ".join(faults) if faults else None
    return {
        s.value: localize(s.value, events, reached.get(s.value), sink_roots=layout.sink_roots,
                          rpc_joins=layout.rpc_joins, fault=fault)
        for s in sentinels
    }


def _runtime_column(mapped) -> dict[str, bool | None]:
    return {m.sentinel.value: m.stages.get("runtime") for m in mapped}


def _localize_all(context, events: list[Event], faults: list[str], layout) -> dict[str, Localization]:
    mapped = stage_map(context.sentinels, load_documents(context.results_dir))
    return localize_all(context.sentinels, events, _runtime_column(mapped), layout, faults)


class _CallIndex:
    """Static callees of functions: delve's reading of each binary for the delve backend (one
    idle session per process), the disassembly (`go tool objdump`) for the others."""

    def __init__(self, context, results_dir: Path, backend: str = "delve") -> None:
        self.context = context
        self.results_dir = results_dir
        self.backend = backend
        self.cache: dict[tuple[str, str], list[str]] = {}

    def callees(self, process: str, function: str) -> list[str]:
        key = (process, function)
        if key not in self.cache:
            binary = self.context.build.binary(process)
            if self.backend != "delve":
                self.cache[key] = objdump_callees(binary, function)
                return self.cache[key]
            with DelveSession(self.context.dlv, f"index-{process}", self.context.sandbox.workdir, self.results_dir,
                              exec_argv=[str(binary), "--help"]) as session:
                self.cache[key] = session.static_callees(function)
        return self.cache[key]


_OBJDUMP_TARGET = re.compile(r"\b(?:CALL|LEAQ)\s+(\S+?)(?:·f)?\(SB\)")


def objdump_callees(binary: Path, function: str) -> list[str]:
    """Functions `function` calls directly or makes closures of, from `go tool objdump`."""
    from harness.toolchain.gocmd import go_query

    proc = go_query(["tool", "objdump", "-s", f"^{re.escape(function)}$", str(binary)])
    if proc.returncode != 0:
        raise HarnessError(f"go tool objdump failed on {binary}: {proc.stderr.strip()[:200]}")
    found = dict.fromkeys(m.group(1) for m in _OBJDUMP_TARGET.finditer(proc.stdout))
    return [f for f in found if f != function and not f.startswith("runtime.")]


def _frontier(localizations: dict[str, Localization], events: list[Event], plan: ResolvedPlan, index: _CallIndex,
              module: str) -> tuple[dict[str, set[str]], list[str]]:
    """Functions to probe next, per process, and why."""
    probed = {p: set(fs) for p, fs in plan.functions.items()}
    add: dict[str, set[str]] = {p: set() for p in PROCESSES}
    reasons: list[str] = []
    for value, loc in localizations.items():
        if loc.status == "dropped":
            top = loc.candidates[0]
            missing = [f for f in index.callees(top.process, top.function)
                       if _in_scope(f, module) and f not in probed[top.process]]
            if missing:
                add[top.process].update(missing)
                reasons.append(f"{value}: {top.function} calls {len(missing)} unprobed function(s)")
        elif loc.status == "unresolved":
            # The value stayed with callers nobody probed: probe the callers seen on the stacks.
            for event in events:
                if event.holds(value) and len(event.stack) > 1:
                    caller = event.stack[1].function
                    if _in_scope(caller, module) and caller not in probed[event.process]:
                        add[event.process].add(caller)
            if any(add.values()):
                reasons.append(f"{value}: held only by functions that handed it back to unprobed callers")
        elif loc.status == "not-seen":
            # Never seen: widen from what ran, callees of the probed functions that were hit.
            hit = {(e.process, e.function) for e in events if e.kind == "call"}
            for process, function in sorted(hit):
                for callee in index.callees(process, function):
                    if _in_scope(callee, module) and callee not in probed[process]:
                        add[process].add(callee)
            if any(add.values()):
                reasons.append(f"{value}: not seen by any probe; widening to callees of the functions that ran")
    reasons = _group_reasons(reasons)
    for process in PROCESSES:
        if len(add[process]) > MAX_NEW_PROBES:
            add[process] = set(sorted(add[process])[:MAX_NEW_PROBES])
    return add, reasons


def _group_reasons(reasons: list[str]) -> list[str]:
    """'v1: why', 'v2: why' -> 'why (2 sentinels)'."""
    grouped: dict[str, int] = {}
    for reason in reasons:
        why = reason.split(": ", 1)[1] if ": " in reason else reason
        grouped[why] = grouped.get(why, 0) + 1
    return [f"{why} ({count} sentinel{'s' if count != 1 else ''})" for why, count in grouped.items()]


def _pass_runner(context, backend: str):
    """A function (number, plan, state_dir, container_id, seq_start) -> PassResult for the backend."""
    source_root = str(context.build.src_dir)
    values = [s.value for s in context.sentinels]

    def run(number: int, plan: ResolvedPlan, state_dir: Path, container_id: str, seq_start: int) -> PassResult:
        common = (number, context.sandbox, context.scenario, context.sentinels, context.reference, container_id,
                  state_dir)
        if backend == "delve":
            return delve_pass(*common, context.dlv, plan, source_root, seq_start=seq_start)
        if backend == "gdb":
            from harness.probes.gdb.session import GdbSession, dwarf_info
            from harness.probes.passes import debugger_pass

            dwarf = {p: dwarf_info(context.build.binary(p), plan.functions[p]) for p in PROCESSES}
            return debugger_pass(GdbSession, *common, context.tool, plan, source_root, seq_start=seq_start,
                                 session_options={"sentinels": values, "dwarf": dwarf})
        if backend == "gotrace":
            from harness.probes.gotrace.run import gotrace_pass

            return gotrace_pass(*common, plan, source_root, seq_start=seq_start)
        raise HarnessError(f"backend {backend!r} has no probe pass")

    return run


def probe_and_localize(context, plan: ResolvedPlan, container_id: str, options) -> ProbeOutcome:
    layout = layout_for_module(context.build.module)
    passes: list[PassResult] = []
    refinement: list[dict] = []
    backend = getattr(options, "backend", "delve")
    run_pass = _pass_runner(context, backend)
    index = _CallIndex(context, context.results_dir / "passes", backend)
    all_events: list[Event] = []
    localizations: dict[str, Localization] = {}
    for number in range(1, options.max_passes + 1):
        state_dir = context.results_dir / "state" if number == 1 else context.results_dir / "passes" / str(number)
        pass_result = run_pass(number, plan, state_dir, container_id if number == 1 else f"{container_id}-p{number}",
                               len(all_events))
        passes.append(pass_result)
        all_events += pass_result.events
        for fault in pass_result.faults:
            warn(f"probe pass {number}: {fault}")
        localizations = _localize_all(context, pass_result.events, pass_result.faults, layout)
        if pass_result.faults:
            break
        if all(loc.status == "reached" for loc in localizations.values()):
            break
        try:
            add, reasons = _frontier(localizations, pass_result.events, plan, index, layout.module)
        except HarnessError as exc:
            refinement.append({"after_pass": number, "stopped": f"could not read the call index: {exc}"})
            break
        if not any(add.values()):
            refinement.append({"after_pass": number, "stopped": "every drop is pinned or nothing is left to probe"})
            break
        if backend == "gotrace":
            # Instrumentation is compiled in: another pass would need another build of the tree.
            refinement.append({"after_pass": number, "stopped": "gotrace instruments at build time; widen the plan "
                               "with --probe and run again", "would_add": {p: sorted(f) for p, f in add.items()}})
            break
        if number == options.max_passes:
            refinement.append({"after_pass": number, "stopped": f"pass limit {options.max_passes} reached",
                               "would_add": {p: sorted(f) for p, f in add.items()}})
            break
        refinement.append({"after_pass": number, "added": {p: sorted(f) for p, f in add.items()}, "why": reasons})
        step(f"refining: {'; '.join(reasons)}")
        plan = ResolvedPlan({p: sorted(set(plan.functions[p]) | add[p]) for p in PROCESSES}, plan.patterns)
    write_events(context.results_dir / "events.jsonl", all_events)
    (context.results_dir / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    last_events = passes[-1].events if passes else []
    graph = build_graph(last_events, plan.functions, layout.rpc_joins)
    outcome = ProbeOutcome(passes, localizations, last_events, plan, graph, refinement)
    if options.transcript and backend == "delve" and any(loc.status == "dropped" for loc in localizations.values()):
        from harness.probes.delve.transcript import record_transcript

        try:
            outcome.transcript = record_transcript(context, outcome, container_id)
        except HarnessError as exc:
            warn(f"the delve transcript could not be recorded: {exc}")
    return outcome


def rerender(results_dir: Path) -> dict:
    """Recompute the graph and verdicts from a run's saved files and write its report again.

    Reads result.json (environment), sentinels.json, events.jsonl, plan.json, state/ and
    recordings/; runs nothing.
    """
    from harness.image.scenario import Sentinel
    from harness.probes.events import read_events
    from harness.report.markdown import write_report

    for name in ("result.json", "sentinels.json", "events.jsonl", "plan.json"):
        if not (results_dir / name).is_file():
            raise HarnessError(f"{results_dir} has no {name}: give the results dir of a run made with --backend delve")
    document = json.loads((results_dir / "result.json").read_text())
    sentinels = [Sentinel(d["source"], d["key"], d["nominal"], d["value"]) for d in
                 json.loads((results_dir / "sentinels.json").read_text())]
    events = read_events(results_dir / "events.jsonl")
    last_pass = max((e.probe_pass for e in events), default=1)
    events = [e for e in events if e.probe_pass == last_pass]
    plan_data = json.loads((results_dir / "plan.json").read_text())
    plan = ResolvedPlan(plan_data["functions"], plan_data["patterns"])
    layout = layout_for_module(document["containerd"]["module"])
    faults = document.get("probe", {}).get("faults", [])
    mapped = stage_map(sentinels, load_documents(results_dir))
    localizations = localize_all(sentinels, events, _runtime_column(mapped), layout, faults)
    sentinel_docs = [m.to_dict() for m in mapped]
    outcome = ProbeOutcome([], localizations, events, plan, build_graph(events, plan.functions, layout.rpc_joins))
    outcome.fill(sentinel_docs, passes=len(document.get("probe", {}).get("passes", [])) or last_pass)
    document["sentinels"] = sentinel_docs
    write_report(document, results_dir, outcome.graph)
    return document
