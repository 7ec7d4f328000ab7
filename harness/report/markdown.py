"""report.md: an upstream-ready write-up of one run, plus the graph files beside it.

It only formats: verdicts come from the --json document, the picture from the graph.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import networkx as nx

from harness.graph.callgraph import graph_to_json, node_id
from harness.image.scenario import STAGES
from harness.report.graphviz import render, to_dot

UPSTREAM = "https://github.com/containerd/containerd/blob"

WATCHED_WITH = {
    "delve": "delve",
    "gdb": "gdb (GDB/MI)",
    "gotrace": "source instrumentation and Go execution traces (`traces/`, open with `go tool trace`)",
}


def upstream_link(document: dict, file: str, line: int) -> str:
    ref = document["containerd"]["commit"] or document["containerd"]["version"]
    if "-" in document["containerd"]["version"] and document["containerd"]["commit"]:
        ref = document["containerd"]["commit"]
    return f"{UPSTREAM}/{ref}/{file}#L{line}"


def source_excerpt(build_dir: str, file: str, line: int, before: int = 6, after: int = 2) -> str:
    path = Path(build_dir) / "src" / file
    if not path.is_file():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    start, end = max(1, line - before), min(len(lines), line + after)
    return "\n".join(f"{'=>' if n == line else '  '} {n:4d}: {lines[n - 1]}" for n in range(start, end + 1))


def machine_environment() -> dict:
    """Recorded into result.json at run time, so a re-rendered report describes the run's machine."""
    try:
        runc = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    except OSError:
        runc = []
    return {"runc": runc[0] if runc else "unknown", "kernel": platform.release(), "platform": platform.platform()}


def _environment(document: dict) -> list[str]:
    machine = document.get("environment") or {"runc": "not recorded", "kernel": "not recorded", "platform": ""}
    containerd = document["containerd"]
    return [
        f"- containerd: `{containerd['version']}` ({containerd['module']}), commit `{containerd['commit'] or 'tag ' + containerd['version']}`, "
        f"built from the Go module proxy with `-gcflags=all=-N -l`" + (f", patches: {', '.join(containerd['patches'])}" if containerd["patches"] else ""),
        f"- Go: `{document['tools']['go']}`; delve: `{document['tools']['delve']}`"
        + (f"; gdb: `{document['tools']['gdb']}`" if document["tools"].get("gdb") else ""),
        f"- runc: `{machine['runc']}`; kernel: `{machine['kernel']}`; {machine['platform']}",
    ]


def _stage_table(document: dict) -> list[str]:
    header = "| source | key | " + " | ".join(STAGES) + " | verdict |"
    rows = [header, "|" + "---|" * (len(STAGES) + 3)]
    mark = {True: "yes", False: "-", None: "?"}
    for s in document["sentinels"]:
        verdict = s.get("verdict", "reached" if s["reached_runtime"] else "not reached")
        rows.append(f"| {s['source']} | `{s['key']}` | " + " | ".join(mark[s["stages"][st]] for st in STAGES) + f" | {verdict} |")
    return rows


def _verdicts(document: dict) -> list[str]:
    out: list[str] = []
    by_drop: dict[tuple, list[dict]] = {}
    for s in document["sentinels"]:
        if s.get("drop"):
            d = s["drop"]
            by_drop.setdefault((d["process"], d["function"], d["file"], d["line"]), []).append(s)
    if not by_drop:
        out.append("No sentinel was dropped by a probed function" + (
            "." if all(s["reached_runtime"] for s in document["sentinels"]) else
            "; see the localization status of each sentinel below."))
    for (process, function, file, line), sentinels in by_drop.items():
        keys = ", ".join(f"`{s['key']}` ({s['source']})" for s in sentinels)
        out += [f"### `{function}` drops {keys}", "",
                f"In the `{process}` process, at [`{file}:{line}`]({upstream_link(document, file, line)}).", ""]
        excerpt = source_excerpt(document["containerd"]["build_dir"], file, line)
        if excerpt:
            out += ["```go", excerpt, "```", ""]
        first = sentinels[0]
        out += [f"Evidence: {first['drop']['evidence']}", "", "Call paths that reached it (innermost caller first):", ""]
        for path in first["drop"]["call_paths"]:
            out.append("- " + " ← ".join(f"`{f.rsplit('/', 1)[-1]}`" for f in path[:8]))
        candidates = first.get("localization", {}).get("candidates", [])
        if len(candidates) > 1:
            out += ["", "Other candidates, ranked lower:", ""]
            for c in candidates[1:]:
                out.append(f"- `{c['function']}` ({c['file']}:{c['line']}): {'; '.join(c['reasons'])}")
        if candidates:
            out += ["", f"Why this one: {'; '.join(candidates[0]['reasons'])}.", ""]
    others = [s for s in document["sentinels"] if not s.get("drop")]
    if others:
        out += ["", "Sentinels without a drop point:", ""]
        for s in others:
            loc = s.get("localization") or {}
            out.append(f"- `{s['key']}` ({s['source']}): {s.get('verdict', 'n/a')}"
                       + (f"; unknown: {'; '.join(loc.get('unknown', []))}" if loc.get("unknown") else ""))
    return out


def _watched(probe: dict) -> str:
    """`ctr`, the daemon and the shim: the processes a pass saw hits in."""
    names = {"ctr": "`ctr`", "containerd": "the daemon", "containerd-shim-runc-v2": "the shim"}
    seen = [n for p, n in names.items() if any((x.get("hits") or {}).get(p) for x in probe.get("passes", []))]
    seen = seen or ["`ctr`", "the daemon"]
    return ", ".join(seen[:-1]) + " and " + seen[-1] if len(seen) > 1 else seen[0]


def _reproduce(document: dict, results_dir: Path) -> list[str]:
    version = document["containerd"]["version"]
    patches = " ".join(f"--patch patches/containerd/{p}" for p in document["containerd"]["patches"])
    lines = ["```sh", "make setup   # Debian packages, Python package (as root)",
             f"annotrace run {document['scenario']} --containerd {version} {patches} --json".replace("  ", " "), "```"]
    commands = results_dir / "commands.log"
    if commands.is_file():
        lines += ["", "The ctr commands it ran against the sandboxed daemon:", "", "```sh",
                  *commands.read_text().strip().splitlines()[:12], "```"]
    return lines


def write_report(document: dict, results_dir: Path, graph: nx.DiGraph) -> Path:
    drop_nodes = {node_id(s["drop"]["process"], s["drop"]["function"]) for s in document["sentinels"] if s.get("drop")}
    dropped_values = {s["value"] for s in document["sentinels"] if not s["reached_runtime"]}
    title = f"{document['scenario']} on containerd {document['containerd']['version']}"
    (results_dir / "graph.json").write_text(json.dumps(graph_to_json(graph), indent=1) + "\n")
    graphml = nx.DiGraph()
    for key, attrs in graph.nodes(data=True):
        graphml.add_node(key, **{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in attrs.items()})
    for a, b, attrs in graph.edges(data=True):
        graphml.add_edge(a, b, **attrs)
    nx.write_graphml(graphml, results_dir / "graph.graphml")
    dot_path = results_dir / "graph.dot"
    dot_path.write_text(to_dot(graph, drop_nodes, dropped_values, title))
    render(dot_path)

    probe = document.get("probe", {})
    lines = [f"# {title}: where image annotations stop", "",
             "Generated by annotrace from a real run: containerd built from source, an isolated daemon, "
             f"{_watched(probe)} watched with {WATCHED_WITH.get(document.get('backend'), 'delve')}, "
             "every annotation source carrying a unique sentinel value.", "",
             "## Stage map", "", *_stage_table(document), "",
             "## Verdict", "", *_verdicts(document), "",
             "## Call graph", "",
             "Red: drop point. Orange: functions where a sentinel was seen, and the edges between them. "
             "Grey: on a stack but not probed. Dashed blue: client RPC to daemon handler.", "",
             "![call graph](graph.png)", "", "([SVG](graph.svg), [DOT](graph.dot), [GraphML](graph.graphml), "
             "[JSON](graph.json), [events](events.jsonl))", "",
             "## Probe passes", ""]
    for p in probe.get("passes", []):
        lines.append(f"- pass {p['pass']}: {sum(len(v) for v in p['functions'].values())} functions, "
                     f"{p['events']} events, {p['seconds']}s" + (f"; faults: {'; '.join(p['faults'])}" if p["faults"] else ""))
    labels = {s["value"]: f"`{s['key']}` ({s['source']})" for s in document["sentinels"]}
    for r in probe.get("refinement", []):
        added = ", ".join(f"{len(v)} {k} function(s)" for k, v in (r.get("added") or {}).items() if v)
        lines.append(f"- after pass {r['after_pass']}: " + (r.get("stopped") or f"added {added or 'nothing'}"))
        for value, state in (r.get("sentinels") or {}).items():
            if state.get("why"):
                lines.append(f"  - {labels.get(value, value)}: {state['status']}; next: {'; '.join(state['why'][:4])}")
    stops = probe.get("stops") or {}
    if stops:
        lines += ["", "Why refinement stopped, per sentinel:", ""]
        lines += [f"- {labels.get(value, value)}: {reason}" for value, reason in stops.items()]
    lines += ["", "## Environment", "", *_environment(document), "", "## Reproduce", "", *_reproduce(document, results_dir), ""]
    transcript = results_dir / "transcript.txt"
    if transcript.is_file():
        lines += ["## delve transcript", "", "<details><summary>dlv exec ctr, break at the drop point, print, bt</summary>",
                  "", "```", transcript.read_text(errors="replace").strip(), "```", "", "</details>", ""]
    path = results_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
