"""The call graph: functions as nodes, observed caller -> callee edges, sentinel sightings.

Nodes are keyed "process:function". Edges come from the stacks in the events
(consecutive frames), so functions that were not probed but sat on a stack are
nodes too (probed=False). A client RPC and the daemon handler it reached are
joined by an edge of kind "rpc" (the version table's joins: ctr -> containerd, and
containerd -> the shim at task Create).
"""

from __future__ import annotations

import networkx as nx

from harness.probes.events import Event


def node_id(process: str, function: str) -> str:
    return f"{process}:{function}"


def package_of(function: str) -> str:
    """github.com/x/y/pkg.(*T).M -> github.com/x/y/pkg"""
    head, _, tail = function.rpartition("/")
    return f"{head}/{tail.split('.', 1)[0]}" if head else function.split(".", 1)[0]


def short_name(function: str) -> str:
    """github.com/containerd/containerd/v2/core/images.Config -> core/images.Config (for pictures)."""
    for prefix in ("github.com/containerd/containerd/v2/", "github.com/containerd/containerd/"):
        if function.startswith(prefix):
            return function[len(prefix):]
    return function.rsplit("/", 1)[-1]


def _ensure_node(graph: nx.DiGraph, process: str, function: str, probed: bool) -> str:
    key = node_id(process, function)
    if key not in graph:
        graph.add_node(key, process=process, function=function, package=package_of(function), short=short_name(function),
                       file="", line_min=0, line_max=0, hits=0, probed=probed, sightings=[])
    elif probed:
        graph.nodes[key]["probed"] = True
    return key


def _note_line(attrs: dict, file: str, line: int) -> None:
    if not line:
        return
    attrs["file"] = attrs["file"] or file
    attrs["line_min"] = min(attrs["line_min"] or line, line)
    attrs["line_max"] = max(attrs["line_max"], line)


def build_graph(events: list[Event], probed: dict[str, list[str]] | None = None,
                rpc_joins: tuple = ()) -> nx.DiGraph:
    graph = nx.DiGraph()
    for process, functions in (probed or {}).items():
        for function in functions:
            _ensure_node(graph, process, function, probed=True)
    for event in events:
        key = _ensure_node(graph, event.process, event.function, probed=True)
        attrs = graph.nodes[key]
        if event.kind == "call":
            attrs["hits"] += 1
        _note_line(attrs, event.file, event.line)
        for sighting in event.sightings:
            attrs["sightings"].append({"value": sighting.value, "where": sighting.where, "path": sighting.path,
                                       "seq": event.seq, "kind": event.kind})
        frames = event.stack
        for callee, caller in zip(frames, frames[1:]):
            callee_key = _ensure_node(graph, event.process, callee.function, probed=False)
            caller_key = _ensure_node(graph, event.process, caller.function, probed=False)
            _note_line(graph.nodes[caller_key], caller.file, caller.line)
            if graph.has_edge(caller_key, callee_key):
                graph.edges[caller_key, callee_key]["count"] += 1
            else:
                graph.add_edge(caller_key, callee_key, kind="call", count=1, line=caller.line)
    for join in rpc_joins:
        client_key, handler_key = node_id(join.client_process, join.client), node_id(join.server_process, join.handler)
        if client_key in graph and handler_key in graph and graph.nodes[handler_key]["hits"]:
            graph.add_edge(client_key, handler_key, kind="rpc", count=1, line=0)
    return graph


def carriers(graph: nx.DiGraph, value: str) -> list[str]:
    """Nodes where `value` was seen, in order of first sighting."""
    seen = []
    for key, attrs in graph.nodes(data=True):
        sequences = [s["seq"] for s in attrs["sightings"] if s["value"] == value]
        if sequences:
            seen.append((min(sequences), key))
    return [key for _, key in sorted(seen)]


def graph_to_json(graph: nx.DiGraph) -> dict:
    return nx.node_link_data(graph, edges="edges")


def graph_from_json(data: dict) -> nx.DiGraph:
    return nx.node_link_graph(data, edges="edges")
