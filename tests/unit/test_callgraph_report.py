"""Unit tests for the call graph, its DOT picture, report.md and `rerender` (annotrace report RUN_DIR).

Everything is rebuilt from the recorded delve runs of containerd v2.1.4 in
tests/fixtures/delve/ (see its README.md); nothing runs containerd or delve.
Rendering the picture needs graphviz's `dot`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import networkx as nx
import pytest

from harness.errors import HarnessError
from harness.graph.callgraph import (
    build_graph,
    carriers,
    graph_from_json,
    graph_to_json,
    node_id,
    package_of,
    short_name,
)
from harness.graph.localize import Scope, localize
from harness.graph.refine import in_scope
from harness.investigate import ProbeOutcome, localization_doc, rerender
from harness.probes.events import Event, Frame, Sighting, read_events
from harness.probes.plan import ResolvedPlan
from harness.report.graphviz import _quote, to_dot
from harness.versions import V1_MODULE, V2_LAYOUT, V2_MODULE

DELVE = Path(__file__).resolve().parents[1] / "fixtures" / "delve"
SEED = DELVE / "seed-ctr-run-v2.1.4"
RUNTIME = DELVE / "runtime-annotation-v2.1.4"
V2 = V2_MODULE
IMAGES_CONFIG = f"{V2}/core/images.Config"
IMAGES_MANIFEST = f"{V2}/core/images.Manifest"
CONFIG_NODE = node_id("ctr", IMAGES_CONFIG)
MANIFEST_NODE = node_id("ctr", IMAGES_MANIFEST)
RPC_CLIENT = f"ctr:{V2}/client.(*remoteContainers).Create"
RPC_HANDLER = f"containerd:{V2}/plugins/services/containers.(*local).Create"

SEED_EVENTS = read_events(SEED / "events.jsonl")
SEED_PLAN = json.loads((SEED / "plan.json").read_text())
SEED_VALUES = [s["value"] for s in json.loads((SEED / "sentinels.json").read_text())]

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz `dot` is not installed: report rendering writes graph.svg/png with it")


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return build_graph(SEED_EVENTS, SEED_PLAN["functions"], V2_LAYOUT.rpc_joins)


# --------------------------------------------------------------------------- the graph


def test_probed_drop_function_node(graph):
    assert graph.number_of_nodes() == 56
    assert graph.number_of_edges() == 59
    attrs = graph.nodes[CONFIG_NODE]
    assert attrs["process"] == "ctr"
    assert attrs["function"] == IMAGES_CONFIG
    assert attrs["package"] == f"{V2}/core/images"
    assert attrs["short"] == "core/images.Config"
    assert attrs["hits"] == 4
    assert attrs["probed"] is True
    assert (attrs["file"], attrs["line_min"], attrs["line_max"]) == ("core/images/image.go", 262, 267)
    assert len(attrs["sightings"]) == 16  # 4 sentinels x 4 returns
    assert {s["where"] for s in attrs["sightings"]} == {"local"}
    assert {s["kind"] for s in attrs["sightings"]} == {"return"}
    assert [s["seq"] for s in attrs["sightings"] if s["value"] == SEED_VALUES[0]] == [6, 17, 26, 37]
    assert {s["path"] for s in attrs["sightings"] if s["value"] == SEED_VALUES[0]} == {
        'manifest.Annotations["com.test.foo"]'}


def test_stack_edges_and_unprobed_frames(graph):
    caller = node_id("ctr", f"{V2}/core/images.(*Image).Config")
    assert graph.has_edge(caller, CONFIG_NODE)
    edge = graph.edges[caller, CONFIG_NODE]
    assert edge["kind"] == "call" and edge["line"] == 108
    assert graph.has_edge(CONFIG_NODE, MANIFEST_NODE)
    assert graph.edges[CONFIG_NODE, MANIFEST_NODE]["line"] == 263
    unpacked = graph.nodes[node_id("ctr", f"{V2}/client.(*image).IsUnpacked")]
    assert unpacked["probed"] is False
    assert unpacked["hits"] == 0
    assert unpacked["sightings"] == []
    assert (unpacked["file"], unpacked["line_min"]) == ("client/image.go", 213)
    # Frames outside the source tree keep their absolute files.
    goexit = graph.nodes[node_id("ctr", "runtime.goexit")]
    assert goexit["probed"] is False and goexit["file"] == "/usr/local/go/src/runtime/asm_amd64.s"
    # Every function of the plan is a probed node.
    for process, functions in SEED_PLAN["functions"].items():
        for function in functions:
            assert graph.nodes[node_id(process, function)]["probed"] is True


def test_rpc_edge_joins_client_and_daemon_handler(graph):
    assert graph.has_edge(RPC_CLIENT, RPC_HANDLER)
    assert graph.edges[RPC_CLIENT, RPC_HANDLER] == {"kind": "rpc", "count": 1, "line": 0}
    assert [(a, b) for a, b, k in graph.edges(data="kind") if k == "rpc"] == [(RPC_CLIENT, RPC_HANDLER)]
    # Without the join table, the processes are not connected.
    bare = build_graph(SEED_EVENTS)
    assert not bare.has_edge(RPC_CLIENT, RPC_HANDLER)
    assert bare.number_of_edges() == 58


def test_rpc_edge_needs_a_handler_that_was_hit():
    client, handler = V2_LAYOUT.rpc_joins[0].client, V2_LAYOUT.rpc_joins[0].handler
    event = Event(1, "ctr", "call", client, "client/containerstore.go", 112, 1, [Frame(client, "c.go", 112)])
    graph = build_graph([event], {"containerd": [handler]}, V2_LAYOUT.rpc_joins)
    assert graph.nodes[node_id("containerd", handler)]["hits"] == 0
    assert graph.number_of_edges() == 0


def test_carriers_in_order_of_first_sighting(graph):
    for value in SEED_VALUES:
        # images.Manifest returned the value (seq 5) before images.Config returned without it (seq 6).
        assert carriers(graph, value) == [MANIFEST_NODE, CONFIG_NODE]
    assert carriers(graph, "never-seen") == []


def test_graph_json_round_trip(graph):
    data = json.loads(json.dumps(graph_to_json(graph)))
    assert "edges" in data and "links" not in data
    back = graph_from_json(data)
    assert back.number_of_nodes() == graph.number_of_nodes() == 56
    assert back.number_of_edges() == graph.number_of_edges() == 59
    assert back.nodes[CONFIG_NODE]["hits"] == 4
    assert back.nodes[CONFIG_NODE]["sightings"] == graph.nodes[CONFIG_NODE]["sightings"]
    assert back.edges[RPC_CLIENT, RPC_HANDLER]["kind"] == "rpc"
    assert back.is_directed()


@pytest.mark.parametrize(("function", "package"), [
    (f"{V2}/core/images.(*Image).Config", f"{V2}/core/images"),
    (f"{V2}/core/runtime/v2.NewBundle", f"{V2}/core/runtime/v2"),
    (f"{V2}/client.WithImageConfigLabels.func1", f"{V2}/client"),
    (f"{V1_MODULE}.(*Client).NewContainer", V1_MODULE),
    ("github.com/urfave/cli/v2.(*Command).Run", "github.com/urfave/cli/v2"),
    ("runtime.goexit", "runtime"),
    ("main.main", "main"),
])
def test_package_of(function, package):
    assert package_of(function) == package


@pytest.mark.parametrize(("function", "short"), [
    (IMAGES_CONFIG, "core/images.Config"),
    (f"{V2}/plugins/services/containers.(*local).Create", "plugins/services/containers.(*local).Create"),
    (f"{V1_MODULE}/images.Config", "images.Config"),
    (f"{V1_MODULE}.(*Client).NewContainer", "containerd.(*Client).NewContainer"),
    ("google.golang.org/grpc.(*Server).handleStream", "grpc.(*Server).handleStream"),
    ("runtime.goexit", "runtime.goexit"),
])
def test_short_name(function, short):
    assert short_name(function) == short


# --------------------------------------------------------------------------- DOT


def test_quote():
    assert _quote('a"b\nc') == '"a\\"b\\nc"'
    assert _quote("back\\slash") == '"back\\\\slash"'
    assert _quote("") == '""'


def test_to_dot_colours_and_edges(graph):
    dot = to_dot(graph, {CONFIG_NODE}, set(SEED_VALUES), 'seed "run"')
    lines = dot.splitlines()
    assert lines[0] == "digraph annotrace {"
    assert lines[1] == '  label="seed \\"run\\""; labelloc=t; fontsize=16; rankdir=TB;'
    assert lines[-1] == "}"
    assert '  subgraph "cluster_containerd" { label="containerd"; style=dashed; color=gray60;' in lines
    assert '  subgraph "cluster_ctr" { label="ctr"; style=dashed; color=gray60;' in lines
    assert (f'    "{CONFIG_NODE}" [label="core/images.Config\\nimage.go:262  (4 calls)", '
            'fillcolor="#e53935", fontcolor=white, penwidth=2];') in lines
    assert (f'    "{MANIFEST_NODE}" [label="core/images.Manifest\\nimage.go:153  (4 calls)", '
            'fillcolor="#ffb74d"];') in lines
    unprobed = node_id("ctr", f"{V2}/client.(*image).IsUnpacked")
    assert (f'    "{unprobed}" [label="client.(*image).IsUnpacked\\nimage.go:213", '
            'fillcolor="#eeeeee", fontcolor=gray30];') in lines
    assert f'  "{RPC_CLIENT}" -> "{RPC_HANDLER}" [style=dashed, label="gRPC", color=blue];' in lines
    assert f'  "{CONFIG_NODE}" -> "{MANIFEST_NODE}" [color=darkorange, penwidth=2.5];' in lines
    caller = node_id("ctr", f"{V2}/core/images.(*Image).Config")
    assert f'  "{caller}" -> "{CONFIG_NODE}";' in lines
    # Labels use DOT's \n; no quoted string spans two lines.
    assert all(line.count('"') % 2 == 0 for line in lines)
    assert sum(1 for line in lines if "#e53935" in line) == 1
    assert sum(1 for line in lines if "#ffb74d" in line) == 1


def test_to_dot_without_drop_colours_nothing_red(graph):
    dot = to_dot(graph, set(), set(), "t")
    assert "#e53935" not in dot and "#ffb74d" not in dot and "darkorange" not in dot
    assert 'style=dashed, label="gRPC"' in dot


# --------------------------------------------------------------------------- rerender and report.md


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / run_dir.name
    shutil.copytree(run_dir, target)
    return target


@needs_dot
def test_rerender_seed_run(tmp_path):
    run_dir = _copy(SEED, tmp_path)
    document = rerender(run_dir)

    sentinels = document["sentinels"]
    assert [s["value"] for s in sentinels] == SEED_VALUES
    for s in sentinels:
        assert s["verdict"] == "dropped"
        assert s["reached_runtime"] is False
        assert s["drop"]["function"].endswith("core/images.Config")
        assert s["drop"]["function"] == IMAGES_CONFIG
        assert (s["drop"]["file"], s["drop"]["line"], s["drop"]["process"]) == ("core/images/image.go", 267, "ctr")
        assert s["drop"]["evidence"] == (
            f'{s["key"]}={s["value"]}: local manifest.Annotations["{s["key"]}"] at return; '
            f"came back from {IMAGES_MANIFEST}; absent from return values; not passed to any probed callee")
        assert len(s["drop"]["call_paths"]) == 4
        assert s["localization"]["status"] == "dropped"
        assert s["localization"]["passes"] == 1
        assert [c["function"] for c in s["localization"]["candidates"]] == [IMAGES_CONFIG]
        assert s["localization"]["candidates"][0]["invocations"] == 4
        assert s["localization"]["candidates"][0]["evidence"] == [
            f'local manifest.Annotations["{s["key"]}"] at return', f"came back from {IMAGES_MANIFEST}"] * 4
        assert s["localization"]["stop"] == "pinned: core/images.Config (ctr); every function it calls is probed"

    for name in ("report.md", "graph.svg", "graph.png", "graph.dot", "graph.graphml", "graph.json"):
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (run_dir / "graph.svg").read_bytes()

    report = (run_dir / "report.md").read_text()
    assert report.startswith("# seed-ctr-run on containerd v2.1.4: where image annotations stop\n")
    assert "## Stage map" in report
    assert "| manifest | `com.test.foo` | - | yes | - | - | - | - | - | - | dropped |" in report
    assert f"### `{IMAGES_CONFIG}` drops `com.test.foo` (manifest), `com.urunc.unikernel.binary` (manifest)" in report
    assert "core/images/image.go:267" in report
    assert "https://github.com/containerd/containerd/blob/v2.1.4/core/images/image.go#L267" in report
    assert "![call graph](graph.png)" in report
    assert ("- `images.(*Image).Config` ← `client.(*image).Config` ← `client.WithImageConfigLabels.func1` ← "
            "`client.(*Client).NewContainer` ← `run.NewContainer` ← `run.init.func1`") in report
    assert "client.WithImageConfigLabels.func1" in report
    assert ("Why this one: in a process that produces the first stage that lost the value; the value ended in its "
            "own variables; held the value 2 level(s) inside a bigger value; ran inside 0 other candidate(s); on the "
            "path that builds what reaches the runtime (under client.(*Client).NewContainer, containers.(*local).Create);"
            " 16 frames deep, 4 distinct call path(s), 4 invocation(s); last seen at event 37.") in report
    assert "- pass 1: 20 functions, 69 events, 12.02s" in report
    assert "- after pass 1: every sentinel is settled" in report
    assert "annotrace run seed-ctr-run --containerd v2.1.4 --json" in report

    graph = graph_from_json(json.loads((run_dir / "graph.json").read_text()))
    assert graph.number_of_nodes() == 56 and graph.number_of_edges() == 59
    graphml = nx.read_graphml(run_dir / "graph.graphml")
    assert graphml.number_of_nodes() == 56
    assert json.loads(graphml.nodes[CONFIG_NODE]["sightings"])[0]["where"] == "local"
    dot = (run_dir / "graph.dot").read_text()
    assert 'label="seed-ctr-run on containerd v2.1.4"' in dot
    assert f'"{CONFIG_NODE}" [label="core/images.Config\\nimage.go:262  (4 calls)", fillcolor="#e53935"' in dot


@needs_dot
def test_rerender_runtime_annotation_run(tmp_path):
    run_dir = _copy(RUNTIME, tmp_path)
    document = rerender(run_dir)
    by_source = {s["source"]: s for s in document["sentinels"]}
    assert by_source["manifest"]["verdict"] == "dropped"
    assert by_source["manifest"]["drop"]["function"] == IMAGES_CONFIG
    assert by_source["manifest"]["drop"]["line"] == 267
    flag = by_source["runtime-flag"]
    assert flag["verdict"] == "reached"
    assert flag["reached_runtime"] is True
    assert flag["drop"] is None
    assert flag["localization"]["candidates"] == []
    assert f"{V2}/core/runtime/v2.NewBundle" in flag["localization"]["last_carriers"]
    report = (run_dir / "report.md").read_text()
    assert "- `com.urunc.unikernel.hypervisor` (runtime-flag): reached" in report
    assert f"### `{IMAGES_CONFIG}` drops `com.urunc.unikernel.hypervisor` (manifest)" in report


@needs_dot
def test_rerender_quotes_the_source_around_the_drop(tmp_path):
    run_dir = _copy(SEED, tmp_path)
    build = tmp_path / "build"
    source = build / "src" / "core" / "images" / "image.go"
    source.parent.mkdir(parents=True)
    source.write_text("\n".join(f"// line {n}" for n in range(1, 267))
                      + "\n\treturn manifest.Config, nil\n}\n")
    result = json.loads((run_dir / "result.json").read_text())
    result["containerd"]["build_dir"] = str(build)
    (run_dir / "result.json").write_text(json.dumps(result))
    rerender(run_dir)
    report = (run_dir / "report.md").read_text()
    assert "```go\n    261: // line 261\n" in report
    assert "=>  267: \treturn manifest.Config, nil\n    268: }\n" in report

    result["containerd"]["build_dir"] = str(tmp_path / "gone")
    (run_dir / "result.json").write_text(json.dumps(result))
    rerender(run_dir)
    assert "```go" not in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("missing", ["events.jsonl", "result.json", "sentinels.json", "plan.json"])
def test_rerender_needs_the_run_files(tmp_path, missing):
    run_dir = _copy(SEED, tmp_path)
    (run_dir / missing).unlink()
    with pytest.raises(HarnessError, match=missing.replace(".", r"\.")) as info:
        rerender(run_dir)
    assert str(info.value) == (f"{run_dir} has no {missing}: give the results dir of a run made with a probe backend")
    assert not (run_dir / "report.md").exists()


@needs_dot
def test_rerender_without_runc_on_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dot").symlink_to(shutil.which("dot"))
    monkeypatch.setenv("PATH", str(bin_dir))
    run_dir = _copy(SEED, tmp_path)
    rerender(run_dir)  # runs nothing: the environment comes from the recorded result.json
    report = (run_dir / "report.md").read_text()
    assert "- runc: `" in report and "kernel: `" in report


# --------------------------------------------------------------------------- investigate helpers


@pytest.mark.parametrize(("function", "inside"), [
    (IMAGES_CONFIG, True),
    (f"{V2}/client.(*Client).NewContainer", True),
    (f"{V2}/client.WithImageConfigLabels.func1", True),
    (f"{V2}/pkg/oci.initialize", True),  # ".init" only as a whole element
    (f"{V2}/client.(*Client).NewContainer.gowrap1", False),
    (f"{V2}/client.(*Client).NewContainer.deferwrap2", False),
    (f"{V2}/client.(*Client).Close-fm", False),
    (f"{V2}/core/images.init", False),
    (f"{V2}/cmd/ctr/commands/run.init.func1", True),  # the CLI action closure is containerd's own code
    (f"{V2}/cmd/ctr/commands/run.init", False),
    (f"{V2}/cmd/ctr/commands/run.init.0", False),
    (f"{V2}/core/images.init.0", False),
    # The API module's generated gRPC/ttrpc code is containerd's too (requests pass through it).
    ("github.com/containerd/containerd/api/services/containers/v1._Containers_Create_Handler", True),
    ("github.com/containerd/platforms.Only", False),
    ("google.golang.org/grpc.(*Server).handleStream", False),
    ("runtime.goexit", False),
    (f"{V2}x/pkg.F", False),
])
def test_in_scope(function, inside):
    assert in_scope(function, V2) is inside


def test_localization_doc_and_fill():
    value = SEED_VALUES[0]
    loc = localize(value, SEED_EVENTS, False, scope=Scope.of(V2_LAYOUT))
    doc = localization_doc(loc, 3)
    assert doc["status"] == "dropped" and doc["passes"] == 3 and doc["unknown"] == []
    assert doc["first_seen"]["function"] == IMAGES_MANIFEST  # its return value held it first
    assert len(doc["candidates"]) == 1
    candidate = doc["candidates"][0]
    assert (candidate["function"], candidate["process"], candidate["file"], candidate["line"]) == (
        IMAGES_CONFIG, "ctr", "core/images/image.go", 267)
    assert candidate["invocations"] == 4
    assert candidate["evidence"] == ['local manifest.Annotations["com.test.foo"] at return',
                                     f"came back from {IMAGES_MANIFEST}"] * 4
    assert candidate["reasons"][1] == "the value ended in its own variables"

    plan = ResolvedPlan(SEED_PLAN["functions"], SEED_PLAN["patterns"])
    outcome = ProbeOutcome([], {value: loc}, SEED_EVENTS, plan, build_graph(SEED_EVENTS))
    docs = [{"key": "com.test.foo", "value": value}, {"key": "other", "value": "not-localized"}]
    outcome.fill(docs)
    assert docs[1] == {"key": "other", "value": "not-localized"}
    assert docs[0]["verdict"] == "dropped"
    assert docs[0]["localization"]["passes"] == 0
    assert docs[0]["drop"]["function"] == IMAGES_CONFIG
    assert docs[0]["drop"]["line"] == 267
    assert docs[0]["drop"]["evidence"].startswith(f"com.test.foo={value}: local manifest.Annotations")
    assert outcome.summary() == {"passes": [], "refinement": [], "faults": [], "complete": True, "transcript": None,
                                 "stops": {}}
    assert outcome.action is None


def test_fill_reached_has_no_drop():
    value = SEED_VALUES[1]
    loc = localize(value, SEED_EVENTS, True, scope=Scope.of(V2_LAYOUT))
    outcome = ProbeOutcome([], {value: loc}, SEED_EVENTS, ResolvedPlan({}, {}), None)
    docs = [{"key": "com.urunc.unikernel.binary", "value": value}]
    outcome.fill(docs)
    assert docs[0]["verdict"] == "reached"
    assert "drop" not in docs[0]
    assert docs[0]["localization"]["candidates"] == []
    assert docs[0]["localization"]["first_seen"]["where"] == [
        'return ~r0.Annotations["com.urunc.unikernel.binary"]',
        'local m[0].m.Annotations["com.urunc.unikernel.binary"]']


def test_sightings_on_hand_built_graph_feed_carriers():
    events = [Event(2, "ctr", "return", "m/p.B", "b.go", 4, 1, [Frame("m/p.B", "b.go", 4), Frame("m/p.A", "a.go", 1)],
                    [Sighting("V", "local", "x")]),
              Event(1, "ctr", "call", "m/p.C", "c.go", 3, 1, [Frame("m/p.C", "c.go", 3)],
                    [Sighting("V", "argument", "y")])]
    graph = build_graph(events)
    assert carriers(graph, "V") == ["ctr:m/p.C", "ctr:m/p.B"]
    assert graph.nodes["ctr:m/p.A"]["probed"] is False
    assert graph.nodes["ctr:m/p.B"]["hits"] == 0  # only calls count as hits
    assert graph.nodes["ctr:m/p.C"]["hits"] == 1
