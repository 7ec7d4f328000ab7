"""Before and after a patch: the same scenario on the unpatched and the patched build, side by side."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.probes.plan import ProbePlan, parse_probe_option
from harness.regress.compare import compare_runs
from harness.regress.verdict import run_verdict
from harness.versions import canonical_function


def _cell(doc: dict) -> dict:
    drop = doc.get("drop") or {}
    return {
        "furthest_stage": doc.get("furthest_stage"),
        "reached_runtime": doc.get("reached_runtime"),
        "verdict": doc.get("verdict"),
        "drop": f"{canonical_function(drop['function'])} ({drop['file']}:{drop['line']})" if drop else None,
    }


def _fix_holders(doc: dict, fix_probes: list[str]) -> list[str]:
    """Functions of the fix (its declared probes) that held the sentinel and did not pass it on."""
    plan = ProbePlan()
    for probe in fix_probes:
        parse_probe_option(plan, probe)  # the same [process:]REGEX reading as --probe
    candidates = (doc.get("localization") or {}).get("candidates", [])
    return [c["function"].rsplit("/", 1)[-1] for c in candidates
            if any(re.search(p, c["function"]) for p in plan.patterns.get(c["process"], []))]


def before_after(unpatched: dict, patched: dict) -> dict:
    """The `compare_unpatched` section of the patched run's document."""
    before, after = run_verdict(unpatched), run_verdict(patched)
    old = {(s["source"], s["key"]): s for s in unpatched["sentinels"]}
    fix_probes = (patched.get("allow_list") or {}).get("probes", [])
    rows = []
    for doc in patched["sentinels"]:
        previous = old.get((doc["source"], doc["key"]))
        rows.append({"source": doc["source"], "key": doc["key"], "allow_list": doc.get("allow_list"),
                     "unpatched": _cell(previous) if previous else None, "patched": _cell(doc),
                     "held_by_fix": _fix_holders(doc, fix_probes)})
    return {
        "patches": list(after.patches),
        "unpatched_results_dir": unpatched["results_dir"],
        "changes": [c.to_dict() for c in compare_runs(before, after)],
        "sentinels": rows,
    }


def _where(cell: dict | None, winner: str | None = None) -> str:
    if cell is None:
        return "-"
    if cell["reached_runtime"]:
        return "**runtime**"
    text = f"stops after {cell['furthest_stage'] or 'nowhere'}"
    if winner:
        text += f" (the {winner} value wins)"
    return text + (f"; dropped in `{cell['drop']}`" if cell["drop"] else "")


def before_after_markdown(section: dict) -> list[str]:
    patches = ", ".join(f"`{p}`" for p in section["patches"])
    lines = ["## Before and after the patch", "",
             f"The same scenario on the unpatched build ([run](../{Path(section['unpatched_results_dir']).name})) "
             f"and with {patches}.",
             "", "| source | key | unpatched | patched | allow-list |", "|---|---|---|---|---|"]
    winners = {(r["key"]): r["source"] for r in section["sentinels"] if r["patched"]["reached_runtime"]}
    for row in section["sentinels"]:
        winner = winners.get(row["key"]) if row["allow_list"] == "allowed" else None
        lines.append(f"| {row['source']} | `{row['key']}` | {_where(row['unpatched'])} | {_where(row['patched'], winner)} "
                     f"| {row['allow_list'] or '-'} |")
    made = [r for r in section["sentinels"] if r["patched"]["reached_runtime"]
            and not (r["unpatched"] or {}).get("reached_runtime")]
    blocked = [r for r in section["sentinels"] if r["allow_list"] == "blocked"]
    lines.append("")
    if made:
        lines.append(f"{patches} made the difference for " + ", ".join(f"`{r['key']}` ({r['source']})" for r in made)
                     + ": they reach the runtime only with the patch.")
    if blocked:
        lines.append("Stopped by the allow-list, as intended: " + ", ".join(
            f"`{r['key']}` ({r['source']}, {'reached the runtime!' if r['patched']['reached_runtime'] else 'not in the runtime spec'}"
            + (f"; held by the fix's `{'`, `'.join(r.get('held_by_fix') or [])}`, which did not carry it"
               if r.get("held_by_fix") else "") + ")"
            for r in blocked) + ".")
    return lines + [""]


def write_before_after(results_dir: Path, document: dict, section: dict) -> None:
    """Add the section to the patched run's result.json and report (report.md, or before-after.md alone)."""
    document["compare_unpatched"] = section
    (results_dir / "result.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = before_after_markdown(section)
    (results_dir / "before-after.md").write_text("\n".join([f"# {document['scenario']} on containerd "
                                                            f"{document['containerd']['version']}", "", *lines]))
    report = results_dir / "report.md"
    if report.is_file():
        text = report.read_text()
        marker = "\n## Stage map"
        text = text.replace(marker, "\n" + "\n".join(lines) + marker, 1) if marker in text else text + "\n".join(lines)
        report.write_text(text)
