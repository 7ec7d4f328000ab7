"""`annotrace compare`: one scenario under several probe backends, side by side.

Each backend runs the scenario for real (its own sandbox, same build, new sentinels).
What is compared is what the backends saw, not their sentinel values:
  - functions seen: (process, function) pairs with at least one event,
  - carriers: per sentinel key, the functions that held its value somewhere,
  - the drop point and the stage map of every sentinel (these must agree),
and what each cost (wall time of the run, of the probe pass, of an instrumented build).
The first backend is the reference; agreement is judged against it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.probes.events import read_events
from harness.regress.runner import Evaluation, evaluate


@dataclass
class BackendView:
    backend: str
    evaluation: Evaluation
    functions: set[tuple[str, str]] = field(default_factory=set)
    carriers: dict[str, set[str]] = field(default_factory=dict)  # sentinel key -> functions
    drops: dict[str, str | None] = field(default_factory=dict)  # sentinel key -> function:line or None
    verdicts: dict[str, str | None] = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)
    error: str | None = None

    def costs(self) -> dict:
        document = self.evaluation.document or {}
        passes = (document.get("probe") or {}).get("passes") or []
        instrumented = document.get("instrumented") or {}
        return {
            "run_seconds": round(self.evaluation.run_seconds, 1),
            "probe_seconds": round(sum(p.get("seconds", 0) for p in passes), 2),
            "passes": len(passes),
            "hits": sum(sum(p.get("hits", {}).values()) for p in passes),
            "instrument_build_seconds": instrumented.get("build_seconds"),
        }

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "results_dir": self.evaluation.results_dir,
            "error": self.error,
            "functions_seen": sorted(f"{p}:{f}" for p, f in self.functions),
            "carriers": {k: sorted(v) for k, v in self.carriers.items()},
            "drops": self.drops,
            "verdicts": self.verdicts,
            "stages": self.stages,
            "costs": self.costs(),
        }


def view(backend: str, evaluation: Evaluation) -> BackendView:
    """What one backend's run saw, keyed by sentinel key (values differ between runs)."""
    result = BackendView(backend, evaluation)
    document = evaluation.document
    if document is None:
        result.error = evaluation.verdict.reason or "the run did not complete"
        return result
    by_value = {s["value"]: s["key"] for s in document["sentinels"]}
    for sentinel in document["sentinels"]:
        key = sentinel["key"]
        drop = sentinel.get("drop")
        result.drops[key] = f"{drop['function']}:{drop['line']}" if drop else None
        result.verdicts[key] = sentinel.get("verdict")
        result.stages[key] = sentinel["stages"]
        result.carriers[key] = set()
    events_path = Path(document["results_dir"]) / "events.jsonl"
    if events_path.is_file():
        for event in read_events(events_path):
            result.functions.add((event.process, event.function))
            for sighting in event.sightings:
                if sighting.value in by_value:
                    result.carriers[by_value[sighting.value]].add(event.function)
    return result


def agreement(views: list[BackendView]) -> dict:
    """Where each backend agrees with the first one, and where not."""
    reference = views[0]
    report: dict = {"reference": reference.backend, "backends": {}}
    for other in views[1:]:
        if reference.error or other.error:
            report["backends"][other.backend] = {"agrees": False, "error": reference.error or other.error}
            continue
        drops = {k: (reference.drops.get(k), other.drops.get(k)) for k in reference.drops
                 if reference.drops.get(k) != other.drops.get(k)}
        stages = {k: {"reference": reference.stages.get(k), other.backend: other.stages.get(k)}
                  for k in reference.stages if reference.stages.get(k) != other.stages.get(k)}
        verdicts = {k: (reference.verdicts.get(k), other.verdicts.get(k)) for k in reference.verdicts
                    if reference.verdicts.get(k) != other.verdicts.get(k)}
        carriers = {}
        for key in reference.carriers:
            only_reference = reference.carriers[key] - other.carriers.get(key, set())
            only_other = other.carriers.get(key, set()) - reference.carriers[key]
            if only_reference or only_other:
                carriers[key] = {"only_" + reference.backend: sorted(only_reference),
                                 "only_" + other.backend: sorted(only_other)}
        report["backends"][other.backend] = {
            "agrees": not drops and not stages and not verdicts,
            "drops_differ": drops,
            "stages_differ": stages,
            "verdicts_differ": verdicts,
            "functions_only_" + reference.backend: sorted(f"{p}:{f}" for p, f in reference.functions - other.functions),
            "functions_only_" + other.backend: sorted(f"{p}:{f}" for p, f in other.functions - reference.functions),
            "carriers_differ": carriers,
        }
    return report


def compare_backends(scenario, version: str, backends: list[str], patches: tuple[Path, ...] = (),
                     max_passes: int = 8) -> dict:
    views = [view(backend, evaluate(scenario, version, backend, patches, max_passes)) for backend in backends]
    return {
        "scenario": scenario.name,
        "containerd": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "views": [v.to_dict() for v in views],
        "agreement": agreement(views),
    }


def _short(function: str | None) -> str:
    if function is None:
        return "-"
    return function.rsplit("/", 1)[-1]


def markdown(document: dict) -> str:
    views = document["views"]
    names = [v["backend"] for v in views]
    lines = [f"# {document['scenario']} on containerd {document['containerd']}: backends compared", ""]
    lines += ["## Drop point per sentinel", "", "| key | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    keys = list(views[0]["drops"]) or list(next((v["drops"] for v in views if v["drops"]), {}))
    for key in keys:
        cells = [f"{v['verdicts'].get(key) or v['error'] or '?'}: {_short(v['drops'].get(key))}" for v in views]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "## Agreement with " + document["agreement"]["reference"], ""]
    for backend, verdict in document["agreement"]["backends"].items():
        if verdict.get("error"):
            lines.append(f"- **{backend}**: could not be compared: {verdict['error']}")
            continue
        state = "agrees" if verdict["agrees"] else "DIFFERS"
        lines.append(f"- **{backend}** {state} on drop points, verdicts and the stage map.")
        for field_name in ("drops_differ", "verdicts_differ", "stages_differ"):
            for key, diff in verdict[field_name].items():
                lines.append(f"  - {field_name.replace('_', ' ')}: {key}: {json.dumps(diff)}")
        for name, functions in verdict.items():
            if name.startswith("functions_only_") and functions:
                lines.append(f"  - {name.replace('_', ' ')}: {', '.join(_short(f) for f in functions)}")
        for key, diff in verdict["carriers_differ"].items():
            parts = [f"{k.replace('_', ' ')}: {', '.join(_short(f) for f in v) or '-'}" for k, v in diff.items()]
            lines.append(f"  - carriers of {key}: {'; '.join(parts)}")
    lines += ["", "## Cost", "", "| backend | run s | probe pass s | passes | hits | instrumented build s |",
              "|---|---|---|---|---|---|"]
    for v in views:
        c = v["costs"]
        build = c["instrument_build_seconds"]
        lines.append(f"| {v['backend']} | {c['run_seconds']} | {c['probe_seconds']} | {c['passes']} | {c['hits']} | "
                     f"{'-' if build is None else build} |")
    lines += ["", "Run seconds include the sandbox, the image and the stage map; the probe pass is the "
              "probed `ctr run` itself. See benchmarks/backend_cost.py for ratios against a plain run."]
    return "\n".join(lines) + "\n"


__all__ = ["agreement", "compare_backends", "markdown", "view"]
