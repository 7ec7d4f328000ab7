"""The call graph as Graphviz DOT, and its rendering to SVG and PNG with `dot`.

The drop point is filled red, functions where a sentinel was seen are orange, the
edges between them (the sentinel-carrying path) are drawn thick and orange, RPC
joins are dashed. One cluster per process.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import networkx as nx

from harness.errors import ToolMissing


def _quote(text: str) -> str:
    """A DOT string; real newlines become DOT's \\n line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(graph: nx.DiGraph, drop_nodes: set[str], values: set[str], title: str) -> str:
    carrying = {n for n, a in graph.nodes(data=True) if any(s["value"] in values for s in a["sightings"])}
    lines = ["digraph annotrace {", f"  label={_quote(title)}; labelloc=t; fontsize=16; rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, color=gray50];']
    processes = sorted({a["process"] for _, a in graph.nodes(data=True)})
    for process in processes:
        lines.append(f"  subgraph {_quote('cluster_' + process)} {{ label={_quote(process)}; style=dashed; color=gray60;")
        for key, attrs in graph.nodes(data=True):
            if attrs["process"] != process:
                continue
            label = attrs["short"]
            if attrs.get("line_min"):
                label += f"\n{attrs.get('file', '').rsplit('/', 1)[-1]}:{attrs['line_min']}"
            if attrs.get("hits"):
                label += f"  ({attrs['hits']} call{'s' if attrs['hits'] != 1 else ''})"
            style = []
            if key in drop_nodes:
                style = ['fillcolor="#e53935"', "fontcolor=white", "penwidth=2"]
            elif key in carrying:
                style = ['fillcolor="#ffb74d"']
            elif not attrs.get("probed"):
                style = ['fillcolor="#eeeeee"', "fontcolor=gray30"]
            lines.append(f"    {_quote(key)} [label={_quote(label)}{', ' if style else ''}{', '.join(style)}];")
        lines.append("  }")
    for caller, callee, attrs in graph.edges(data=True):
        style = []
        if attrs.get("kind") == "rpc":
            style = ["style=dashed", 'label="gRPC"', "color=blue"]
        elif callee in carrying | drop_nodes and caller in carrying | drop_nodes:
            style = ["color=darkorange", "penwidth=2.5"]
        lines.append(f"  {_quote(caller)} -> {_quote(callee)}{' [' + ', '.join(style) + ']' if style else ''};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_path: Path) -> list[Path]:
    dot = shutil.which("dot")
    if dot is None:
        raise ToolMissing("dot", "install graphviz (scripts/setup.sh does)")
    made = []
    for fmt in ("svg", "png"):
        target = dot_path.with_suffix(f".{fmt}")
        subprocess.run([dot, f"-T{fmt}", str(dot_path), "-o", str(target)], check=True, capture_output=True)
        made.append(target)
    return made
