"""Unit tests for the gotrace backend: recorded trace events, the readtrace helper, the rewriter.

Recorded data: tests/fixtures/gotrace/README.md. The last two tests build our Go helpers
(cached) and the small sample program, so they need the go command and the module proxy
(golang.org/x/exp), like the rest of the suite.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.graph.localize import Scope, localize
from harness.probes.gotrace.build import GO_SOURCE, PROBE_SOURCE
from harness.probes.gotrace.run import log_to_event, process_of, read_traces, trace_events
from harness.probes.events import Unreadable
from harness.probes.plan import ResolvedPlan
from harness.toolchain.gocmd import go_binary, go_env
from harness.toolchain.tools import build_go_tool
from harness.versions import V2_LAYOUT

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gotrace"
SEED = FIXTURES / "seed-ctr-run-v2.1.4"
SENTINELS = json.loads((SEED / "sentinels.json").read_text())
PLAN_DATA = json.loads((SEED / "plan.json").read_text())
PLAN = ResolvedPlan(PLAN_DATA["functions"], PLAN_DATA["patterns"])
IMAGES_CONFIG = "github.com/containerd/containerd/v2/core/images.Config"


def _entries() -> list[dict]:
    with gzip.open(SEED / "trace-entries.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


EVENTS, SUMMARY = trace_events(_entries(), PLAN, 1, 0)


def test_recorded_logs_become_events_of_the_planned_functions():
    assert SUMMARY == {"regions": 28, "logs": 56}
    assert len(EVENTS) == 56
    assert {e.process for e in EVENTS} == {"ctr", "containerd"}
    assert all(e.function in PLAN.functions[e.process] for e in EVENTS)
    assert all(e.backend == "gotrace" and e.goroutine > 0 and e.stack for e in EVENTS)
    assert [e.seq for e in EVENTS] == list(range(1, 57))  # in time order across the two files
    config = [e for e in EVENTS if e.function == IMAGES_CONFIG]
    # The rewrite adds no line: the lines are the source's (the function's opening line, the return).
    assert {(e.kind, e.file, e.line) for e in config} == {("call", "core/images/image.go", 262),
                                                           ("return", "core/images/image.go", 267)}


def test_images_config_holds_the_annotations_in_a_local_not_in_its_results():
    returned = next(e for e in EVENTS if e.function == IMAGES_CONFIG and e.kind == "return")
    for sentinel in SENTINELS:
        where = {(s.where, s.path) for s in returned.holds(sentinel["value"])}
        assert ("local", f'manifest.Annotations["{sentinel["key"]}"]') in where
        assert not any(w == "return" for w, _ in where)


@pytest.mark.parametrize("sentinel", SENTINELS, ids=lambda s: s["key"])
def test_localization_on_gotrace_events_names_images_config(sentinel):
    loc = localize(sentinel["value"], EVENTS, False, scope=Scope.of(V2_LAYOUT))
    assert loc.status == "dropped"
    assert (loc.drop.function, loc.drop.line) == (IMAGES_CONFIG, 267)


def test_a_function_outside_the_process_plan_is_left_out():
    entry = next(e for e in _entries() if "message" in e and e["file"].startswith("ctr-"))
    payload = json.loads(entry["message"])
    payload["f"] = PLAN.functions["containerd"][0]  # compiled into ctr too, but not watched there
    events, _ = trace_events([{**entry, "message": json.dumps(payload)}], PLAN, 1, 0)
    assert events == []


def test_process_of_trace_files():
    assert process_of("ctr-2412-0.trace") == "ctr"
    assert process_of("containerd-2371-1.trace") == "containerd"


def test_log_to_event_keeps_unreadable_values_unknown():
    entry = {"time_ns": 10, "goroutine": 7, "file": "ctr-1-0.trace",
             "stack": [{"function": "f", "file": "/src/a.go", "line": 99}],
             "message": json.dumps({"k": "return", "f": "f", "file": "a.go", "line": 3,
                                    "s": [], "u": [{"where": "local", "path": "m", "reason": "truncated",
                                                    "content": "map", "loaded": 256, "length": 300}]})}
    event = log_to_event(entry, "ctr", 1, 1, 0, "/src")
    assert event.unreadable == [Unreadable("local", "m", "truncated", "map", 256, 300)] and event.sightings == []
    assert (event.file, event.line, event.stack[0].line) == ("a.go", 3, 3)


def test_readtrace_reads_the_recorded_ctr_trace_like_the_run_did(tmp_path):
    trace = tmp_path / "ctr-16746-0.trace"
    trace.write_bytes(gzip.decompress((SEED / "ctr.trace.gz").read_bytes()))
    entries = read_traces([trace])
    recorded = [e for e in _entries() if e["file"] == "ctr-16746-0.trace"]
    assert [e for e in entries if "message" in e] == [e for e in recorded if "message" in e]


def test_readtrace_refuses_a_truncated_trace(tmp_path):
    from harness.errors import HarnessError

    trace = tmp_path / "ctr-1-0.trace"
    trace.write_bytes(gzip.decompress((SEED / "ctr.trace.gz").read_bytes())[:5000])
    with pytest.raises(HarnessError, match="ctr-1-0.trace"):
        read_traces([trace])


def test_instrument_rewrites_without_moving_lines_and_the_events_find_the_sentinels(tmp_path):
    instrument = build_go_tool("gotrace", GO_SOURCE, "./cmd/instrument")
    src = tmp_path / "sample"
    shutil.copytree(FIXTURES / "sample", src)
    original = (src / "main.go").read_text().splitlines()
    module = "example.com/sample"
    functions = [f"{module}.Config", f"{module}.(*store).Manifest", f"{module}.WithSpec.func1", f"{module}.named",
                 f"{module}.noResult", f"{module}.Missing"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"functions": functions, "mains": ["."]}))
    proc = subprocess.run([str(instrument), "-src", str(src), "-module", module, "-plan", str(plan),
                           "-probe", str(PROBE_SOURCE)], capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    assert sorted(p["function"] for p in report["instrumented"]) == sorted(functions[:-1])
    assert [m["function"] for m in report["missing"]] == [f"{module}.Missing"]
    rewritten = (src / "main.go").read_text().splitlines()
    assert len(rewritten) == len(original)
    changed = [old for old, new in zip(original, rewritten) if old != new]
    # Only the package clause (the import joins it), function openings, returns and the closing
    # brace of a function without results (its last report) are touched, each on its own line.
    assert all(old == "package main" or "func " in old or "return" in old or old == "}" for old in changed)
    binary = tmp_path / "sample-bin"
    subprocess.run([go_binary(), "build", "-o", str(binary), "."], cwd=src, env=go_env(), check=True,
                   capture_output=True)
    traces = tmp_path / "traces"
    traces.mkdir()
    values = ["SENTINEL-DATA", "SENTINEL-MANIFEST", "SENTINEL-RUN", "SENTINEL-SLICE"]
    env = {**os.environ, "ANNOTRACE_TRACE_DIR": str(traces), "ANNOTRACE_SENTINELS": json.dumps(values)}
    run = subprocess.run([str(binary)], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "config 38 10 stopped at 5 <nil>"  # behaviour unchanged
    files = sorted(traces.glob("*.trace"))
    assert [f.name.split("-")[0] for f in files] == ["sample"]  # finished by the deferred Stop in main
    entries = [{**e, "file": "ctr-1-0.trace"} for e in read_traces(files)]
    sample_plan = ResolvedPlan({"ctr": functions, "containerd": []}, {})
    events, _ = trace_events(entries, sample_plan, 1, 0)
    by = {(e.function.rsplit(".", 1)[-1] if "func1" not in e.function else "func1", e.kind): e for e in events}
    config_return = by[("Config", "return")]
    assert {(s.value, s.where, s.path) for s in config_return.sightings} == {
        ("SENTINEL-MANIFEST", "local", 'm.Annotations["com.test.foo"]'),
        ("SENTINEL-DATA", "local", "m.Config.data (bytes)"),  # an unexported []byte, read as text
        ("SENTINEL-DATA", "return", "~r0.data (bytes)"),
        # The receiver-like argument holds the whole store: seen through a pointer and a map.
        ("SENTINEL-MANIFEST", "argument", 's.byName["img"].Annotations["com.test.foo"]'),
        ("SENTINEL-DATA", "argument", 's.byName["img"].Config.data (bytes)'),
    }
    assert config_return.line == 39 and by[("Config", "call")].line == 34
    # The closure's marshalled spec: a local []byte, and the caller's slice through the pointer argument.
    spec = {(s.value, s.where, s.path) for s in by[("func1", "return")].sightings}
    assert spec == {("SENTINEL-RUN", "local", "data (bytes)"), ("SENTINEL-RUN", "argument", "out (bytes)")}
    assert [(e.kind, e.line) for e in events if e.function.endswith(".named")] == [("call", 53), ("return", 57)]  # the early bare return
    assert ("argument", "values[0]") in {(s.where, s.path) for s in by[("noResult", "return")].sightings}
