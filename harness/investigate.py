"""Probe passes, refinement and the verdict: where each sentinel was dropped.

Pass 1 runs the scenario with the probe plan (the version table's default plan, or
with --plan empty only where values enter each process and the runtime sink). While a
sentinel is not settled, the next pass adds the functions the evidence points to
(harness/graph/refine.py: up to callers, into closures, down into callees and the
writes they make, toward the process that produces the first stage that lost it) and
runs the scenario again, until every sentinel is settled or --max-passes is reached.
Each pass is a whole real run; the verdict comes from the last one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.console import step, warn
from harness.errors import HarnessError
from harness.graph.callgraph import build_graph
from harness.graph.localize import Localization, Scope, localize
from harness.graph.refine import next_probes
from harness.probes.events import Event, write_events
from harness.probes.passes import PassResult
from harness.probes.plan import ProbePlan, ResolvedPlan, binary_functions, named_plan, parse_probe_option, resolve_plan
from harness.probes.processes import PROCESSES, watched
from harness.stagemap import load_documents, stage_map
from harness.versions import layout_for_module


def resolve_run_plan(build, scenario, extra_probes: tuple[str, ...], only: bool = False,
                     plan_name: str = "default") -> ResolvedPlan:
    """The named plan for the build's layout (or none with `only`), plus scenario and --probe patterns."""
    layout = layout_for_module(build.module)
    plan = ProbePlan() if only else named_plan(plan_name, layout)
    for process, patterns in scenario.probes.items():
        for pattern in patterns:
            plan.add(process, pattern)
    for option in extra_probes:
        parse_probe_option(plan, option)
    return resolve_plan(plan, _functions(build))


def _functions(build) -> dict[str, list[str]]:
    return {p: binary_functions(build.binary(watched(p).binary)) for p in PROCESSES}


@dataclass
class ProbeOutcome:
    passes: list[PassResult]
    localizations: dict[str, Localization]
    events: list[Event]  # of the last pass
    plan: ResolvedPlan
    graph: object
    refinement: list[dict] = field(default_factory=list)
    stops: dict[str, str] = field(default_factory=dict)  # sentinel value -> why refinement stopped for it
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
            "stops": self.stops,
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
            doc["localization"] = localization_doc(loc, passes, self.stops.get(doc["value"]))
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


def localization_doc(loc: Localization, passes: int, stop: str | None = None) -> dict:
    return {
        "status": loc.status,
        "first_seen": loc.first_seen,
        "last_carriers": loc.last_carriers,
        "unknown": loc.unknown,
        "lost_stage": loc.lost_stage,
        "search": list(loc.search),
        "waiting": loc.waiting,
        "stop": stop,
        "passes": passes,
        "candidates": [
            {"function": c.function, "process": c.process, "file": c.file, "line": c.line, "valid": c.valid,
             "invocations": len(c.invocations), "call_paths": c.call_paths, "reasons": c.reasons,
             "evidence": [g for h in c.invocations for g in (*h.got, *h.changed, *h.wrote_without)][:8]}
            for c in loc.candidates
        ],
    }


def localize_all(sentinels: list, events: list[Event], stages: dict[str, dict], layout,
                 faults: list[str]) -> dict[str, Localization]:
    """A localization per sentinel, from one pass's events and its row of the stage map."""
    fault = "; ".join(faults) if faults else None
    scope = Scope.of(layout)
    return {s.value: localize(s.value, events, stages.get(s.value, {}), scope=scope, fault=fault) for s in sentinels}


def _stage_rows(mapped) -> dict[str, dict]:
    return {m.sentinel.value: dict(m.stages) for m in mapped}


def _localize_pass(context, events: list[Event], faults: list[str], layout) -> dict[str, Localization]:
    mapped = stage_map(context.sentinels, load_documents(context.results_dir))
    return localize_all(context.sentinels, events, _stage_rows(mapped), layout, faults)


def _resolved_entries(layout, functions: dict[str, list[str]]) -> dict[str, list[str]]:
    """The empty plan's functions per process (where values enter), for sentinels not seen where they were lost."""
    from harness.probes.plan import empty_plan

    plan = empty_plan(layout)
    resolved = {}
    for process in PROCESSES:
        names = functions.get(process, [])
        resolved[process] = sorted({n for p in plan.patterns.get(process, []) for n in names if re.search(p, n)})
    return resolved


def probe_and_localize(context, plan: ResolvedPlan, container_id: str, options, backend) -> ProbeOutcome:
    layout = layout_for_module(context.build.module)
    passes: list[PassResult] = []
    refinement: list[dict] = []
    stops: dict[str, str] = {}
    all_events: list[Event] = []
    localizations: dict[str, Localization] = {}
    try:
        plan = _passes(context, plan, container_id, options, backend, layout, passes, refinement, stops, all_events,
                       localizations)
    finally:
        backend.close()
    write_events(context.results_dir / "events.jsonl", all_events)
    (context.results_dir / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    last_events = passes[-1].events if passes else []
    graph = build_graph(last_events, plan.functions, layout.rpc_joins)
    outcome = ProbeOutcome(passes, localizations, last_events, plan, graph, refinement, stops)
    if options.transcript and backend.has("transcript") and \
            any(loc.drop is not None and loc.drop.process == "ctr" for loc in localizations.values()):
        try:
            outcome.transcript = backend.record_transcript(context, outcome, container_id)
        except HarnessError as exc:
            warn(f"the delve transcript could not be recorded: {exc}")
    return outcome


def _passes(context, plan: ResolvedPlan, container_id: str, options, backend, layout, passes: list,
            refinement: list, stops: dict, all_events: list, localizations: dict) -> ResolvedPlan:
    """Run passes until every sentinel is settled (or the pass limit); fills the lists and dicts given."""
    scope = Scope.of(layout)
    functions = _functions(context.build)
    available = {p: set(names) for p, names in functions.items()}
    entries = _resolved_entries(layout, functions)
    pruned: dict[str, set[str]] = {}  # probes dropped for costing a stop each and telling nothing
    for number in range(1, options.max_passes + 1):
        state_dir = context.results_dir / "state" if number == 1 else context.results_dir / "passes" / str(number)
        pass_result = backend.run_pass(context, number, plan, state_dir,
                                       container_id if number == 1 else f"{container_id}-p{number}", len(all_events))
        passes.append(pass_result)
        all_events += pass_result.events
        for fault in pass_result.faults:
            warn(f"probe pass {number}: {fault}")
        localizations.clear()
        localizations.update(_localize_pass(context, pass_result.events, pass_result.faults, layout))
        if pass_result.faults:
            stops.update({v: f"incomplete: {'; '.join(pass_result.faults)}" for v in localizations})
            break
        try:
            decision = next_probes(localizations, pass_result.events, plan.functions, backend.call_index(context.build),
                                   scope, available, entries, pruned)
        except HarnessError as exc:
            stops.update({v: f"could not read the call index: {exc}" for v in localizations})
            refinement.append({"after_pass": number, "stopped": f"could not read the call index: {exc}"})
            break
        stops.clear()
        stops.update(decision.stops)
        record = {"after_pass": number, "sentinels": {v: {"status": loc.status, "why": decision.why.get(v),
                                                          "stop": decision.stops.get(v)}
                                                      for v, loc in localizations.items()}}
        if decision.empty:
            record["stopped"] = "every sentinel is settled" if not decision.why else "nothing left to probe"
            for value in decision.why:
                stops[value] = f"{localizations[value].status}: nothing new to probe"
            refinement.append(record)
            break
        if not backend.has("multi-pass"):
            record["stopped"] = f"{backend.name} cannot add probes between passes; widen the plan with --probe"
            record["would_add"] = decision.add
            for value in decision.why:
                stops[value] = f"{localizations[value].status}: {backend.name} runs one pass"
            refinement.append(record)
            break
        if number == options.max_passes:
            record["stopped"] = f"pass limit {options.max_passes} reached"
            record["would_add"] = decision.add
            for value in decision.why:
                stops[value] = f"{localizations[value].status}: pass limit {options.max_passes} reached"
            refinement.append(record)
            break
        record["added"] = decision.add
        record["pruned"] = {p: f for p, f in decision.prune.items() if f}
        refinement.append(record)
        for process, names in decision.prune.items():
            pruned.setdefault(process, set()).update(names)
        count = sum(len(f) for f in decision.add.values())
        step(f"refining: {count} function(s) more for {len(decision.why)} sentinel(s): "
             + "; ".join(dict.fromkeys(w for ws in decision.why.values() for w in ws[:1])))
        plan = ResolvedPlan({p: sorted((set(plan.functions[p]) | set(decision.add.get(p, []))) - pruned.get(p, set()))
                             for p in PROCESSES}, plan.patterns)
    return plan


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
            raise HarnessError(f"{results_dir} has no {name}: give the results dir of a run made with a probe backend")
    document = json.loads((results_dir / "result.json").read_text())
    sentinels = [Sentinel(d["source"], d["key"], d["nominal"], d["value"]) for d in
                 json.loads((results_dir / "sentinels.json").read_text())]
    try:
        events = read_events(results_dir / "events.jsonl")
    except ValueError as exc:
        raise HarnessError(f"{results_dir}/events.jsonl: {exc}") from exc
    last_pass = max((e.probe_pass for e in events), default=1)
    events = [e for e in events if e.probe_pass == last_pass]
    plan_data = json.loads((results_dir / "plan.json").read_text())
    plan = ResolvedPlan(plan_data["functions"], plan_data["patterns"])
    layout = layout_for_module(document["containerd"]["module"])
    faults = document.get("probe", {}).get("faults", [])
    mapped = stage_map(sentinels, load_documents(results_dir))
    localizations = localize_all(sentinels, events, _stage_rows(mapped), layout, faults)
    sentinel_docs = [m.to_dict() for m in mapped]
    stops = document.get("probe", {}).get("stops", {})
    outcome = ProbeOutcome([], localizations, events, plan, build_graph(events, plan.functions, layout.rpc_joins),
                           stops=stops)
    outcome.fill(sentinel_docs, passes=len(document.get("probe", {}).get("passes", [])) or last_pass)
    document["sentinels"] = sentinel_docs
    write_report(document, results_dir, outcome.graph)
    return document
