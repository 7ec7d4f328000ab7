"""Unit tests for harness.graph.localize on the recorded delve runs of containerd v2.1.4.

The events come verbatim from tests/fixtures/delve/*/events.jsonl (real runs with the
default plan, see tests/fixtures/delve/README.md), the stage maps from the same runs'
state/ and recordings/. In the seed run every manifest annotation is dropped by
core/images.Config (it returns manifest.Config, not the manifest); in the
runtime-annotation run the --runtime flag annotation reaches the runtime. The rules
themselves are tested one by one on made-up events in test_localize_rules.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.graph.localize import Scope, invocations, localize
from harness.image.scenario import Sentinel
from harness.probes.events import Event, Frame, read_events
from harness.stagemap import load_documents, stage_map
from harness.versions import V2_LAYOUT

DELVE = Path(__file__).resolve().parents[1] / "fixtures" / "delve"
SEED = DELVE / "seed-ctr-run-v2.1.4"
RUNTIME = DELVE / "runtime-annotation-v2.1.4"
V2 = "github.com/containerd/containerd/v2"
IMAGES_CONFIG = f"{V2}/core/images.Config"
IMAGES_MANIFEST = f"{V2}/core/images.Manifest"
SCOPE = Scope.of(V2_LAYOUT)


def _run(directory: Path):
    sentinels = [Sentinel(s["source"], s["key"], s["nominal"], s["value"])
                 for s in json.loads((directory / "sentinels.json").read_text())]
    stages = {m.sentinel.value: dict(m.stages) for m in stage_map(sentinels, load_documents(directory))}
    return read_events(directory / "events.jsonl"), sentinels, stages


SEED_EVENTS, SEED_SENTINELS, SEED_STAGES = _run(SEED)
RUNTIME_EVENTS, RUNTIME_SENTINELS, RUNTIME_STAGES = _run(RUNTIME)
RUNTIME_FLAG = next(s for s in RUNTIME_SENTINELS if s.source == "runtime-flag")
RUNTIME_MANIFEST = next(s for s in RUNTIME_SENTINELS if s.source == "manifest")
FOO = next(s for s in SEED_SENTINELS if s.key == "com.test.foo")


# --------------------------------------------------------------------------- seed run


@pytest.mark.parametrize("sentinel", SEED_SENTINELS, ids=lambda s: s.key)
def test_seed_sentinels_are_dropped_by_images_config(sentinel):
    loc = localize(sentinel.value, SEED_EVENTS, SEED_STAGES[sentinel.value], scope=SCOPE)
    assert loc.status == "dropped"
    assert loc.lost_stage == "spec" and loc.search == ("ctr", "containerd")
    assert loc.unknown == [] and loc.waiting == []
    assert [c.function for c in loc.candidates] == [IMAGES_CONFIG]
    top = loc.drop
    assert (top.file, top.line, top.process) == ("core/images/image.go", 267, "ctr")
    assert top.on_sink_path is True
    assert len(top.invocations) == 4
    # images.Manifest handed the value back to its caller: never a candidate.
    assert IMAGES_MANIFEST not in {c.function for c in loc.candidates}
    assert top.reasons[:3] == ["in a process that produces the first stage that lost the value",
                               "the value ended in its own variables", "held the value 2 level(s) inside a bigger value"]

    paths = top.call_paths
    assert len(paths) == 4
    labels = [p for p in paths if f"{V2}/client.WithImageConfigLabels.func1" in p]
    args = [p for p in paths if f"{V2}/pkg/oci.WithImageConfigArgs.func1" in p]
    assert len(labels) == 1 and len(args) == 1
    assert labels[0][:4] == [f"{V2}/core/images.(*Image).Config", f"{V2}/client.(*image).Config",
                             f"{V2}/client.WithImageConfigLabels.func1", f"{V2}/client.(*Client).NewContainer"]
    # Paths are cut after the last containerd frame: no urfave/cli, main or runtime frames.
    assert all(frame.startswith(V2 + "/") for path in paths for frame in path)

    # Where the value was first seen: the earliest event holding it, images.Manifest's return.
    assert loc.first_seen == {"function": IMAGES_MANIFEST, "process": "ctr", "seq": 5, "kind": "return",
                              "where": [f'return ~r0.Annotations["{sentinel.key}"]',
                                        f'local m[0].m.Annotations["{sentinel.key}"]']}
    assert loc.last_carriers == [IMAGES_CONFIG, IMAGES_MANIFEST]


def test_seed_drop_evidence_names_the_local_and_where_it_came_from():
    loc = localize(FOO.value, SEED_EVENTS, SEED_STAGES[FOO.value], scope=SCOPE)
    assert loc.drop.evidence(f"{FOO.key}={FOO.value}") == (
        f'com.test.foo={FOO.value}: local manifest.Annotations["com.test.foo"] at return; came back from '
        f"{IMAGES_MANIFEST}; absent from return values; not passed to any probed callee")


def test_seed_reached_runtime_means_no_drop():
    loc = localize(FOO.value, SEED_EVENTS, True, scope=SCOPE)
    assert loc.status == "reached" and loc.drop is None and loc.candidates == []
    assert loc.first_seen["function"] == IMAGES_MANIFEST
    assert loc.last_carriers == [IMAGES_CONFIG, IMAGES_MANIFEST]


def test_seed_unknown_runtime_copy_and_a_fault_are_incomplete():
    loc = localize(FOO.value, SEED_EVENTS, None, scope=SCOPE)
    assert loc.status == "incomplete" and loc.drop is None
    assert loc.unknown == ["the runtime's copy of config.json was not recorded"]
    loc = localize(FOO.value, SEED_EVENTS, SEED_STAGES[FOO.value], scope=SCOPE, fault="delve died")
    assert loc.status == "incomplete" and loc.unknown == ["delve died"]
    assert loc.candidates == [] and loc.first_seen is None


def test_value_nobody_saw():
    assert localize("never-there", SEED_EVENTS, False, scope=SCOPE).status == "not-seen"
    loc = localize("never-there", SEED_EVENTS, True, scope=SCOPE)
    assert loc.status == "reached" and loc.first_seen is None and loc.last_carriers == []


# --------------------------------------------------------------------------- runtime-annotation run


def test_runtime_flag_reaches_the_runtime_through_ctr_the_daemon_and_the_shim():
    assert RUNTIME_STAGES[RUNTIME_FLAG.value]["runtime"] is True
    loc = localize(RUNTIME_FLAG.value, RUNTIME_EVENTS, RUNTIME_STAGES[RUNTIME_FLAG.value], scope=SCOPE)
    assert loc.status == "reached" and loc.candidates == [] and loc.drop is None
    assert loc.first_seen == {"function": f"{V2}/cmd/ctr/commands/run.NewContainer", "process": "ctr", "seq": 1,
                              "kind": "call", "where": ["argument cliContext.parentContext.flagSet.args[5]"]}
    assert loc.last_carriers[:3] == [f"{V2}/plugins/services/tasks.(*local).Create",
                                     f"{V2}/core/runtime/v2.(*TaskManager).Create", f"{V2}/core/runtime/v2.NewBundle"]
    # The shim was watched too; its Create request names the bundle, it does not carry the spec.
    shim = {e.function for e in RUNTIME_EVENTS if e.process == "containerd-shim-runc-v2"}
    assert f"{V2}/cmd/containerd-shim-runc-v2/task.(*service).Create" in shim


def test_a_value_the_runtime_lacks_after_the_bundle_had_it_is_searched_in_the_shim():
    # Had the runtime not got it while the bundle did, every holder is upstream of the loss: the
    # localization names nobody and says which process to search.
    stages = dict(RUNTIME_STAGES[RUNTIME_FLAG.value], runtime=False)
    loc = localize(RUNTIME_FLAG.value, RUNTIME_EVENTS, stages, scope=SCOPE)
    assert loc.status == "unresolved" and loc.drop is None
    assert loc.lost_stage == "runtime" and loc.search == ("containerd-shim-runc-v2",)
    assert loc.waiting == ["every candidate is upstream of the runtime stage, which lost it; "
                           "search containerd-shim-runc-v2"]


def test_runtime_manifest_annotation_is_dropped_at_images_config():
    loc = localize(RUNTIME_MANIFEST.value, RUNTIME_EVENTS, RUNTIME_STAGES[RUNTIME_MANIFEST.value], scope=SCOPE)
    assert loc.status == "dropped"
    assert [c.function for c in loc.candidates] == [IMAGES_CONFIG]
    assert (loc.drop.file, loc.drop.line, loc.drop.process) == ("core/images/image.go", 267, "ctr")


# --------------------------------------------------------------------------- invocations


def test_invocations_pair_calls_and_returns():
    every = invocations(SEED_EVENTS)
    configs = [i for i in every if i.function == IMAGES_CONFIG]
    assert [(i.call.seq, i.ret.seq) for i in configs] == [(3, 6), (14, 17), (23, 26), (34, 37)]
    for invocation in configs:
        assert invocation.process == "ctr" and invocation.goroutine == 1
        assert invocation.callers == invocation.call.caller_stack == invocation.ret.caller_stack
        assert invocation.first_seq == invocation.call.seq and invocation.last_seq == invocation.ret.seq
    # Functions with defers stop at two return locations in one return; the second stop
    # (after the deferred calls) becomes the invocation's return instead of an orphan.
    assert len(every) == 31 and all(i.call and i.ret for i in every)
    returns = {i.function.rsplit("/", 1)[-1]: i.ret.seq for i in every}
    assert returns["metadata.(*containerStore).Create"] == 47 and returns["client.(*Client).NewContainer"] == 51
    assert returns["v2.NewBundle"] == 57 and returns["task.(*service).Create"] == 66


def test_orphan_return_and_unmatched_call():
    stack = [Frame("pkg.F", "f.go", 3), Frame("pkg.G", "g.go", 9)]
    orphan = Event(4, "ctr", "return", "pkg.F", "f.go", 5, 1, stack)
    pending = Event(7, "ctr", "call", "pkg.F", "f.go", 3, 2, stack)
    result = invocations([pending, orphan])  # sorted by seq inside
    assert len(result) == 2
    assert result[0].call is None and result[0].ret is orphan
    assert result[0].first_seq == 4 and result[0].last_seq == 4 and result[0].callers == ("pkg.G",)
    assert result[1].call is pending and result[1].ret is None and result[1].last_seq == 7


def test_invocations_pair_nested_recursion_innermost_first():
    stack = [Frame("pkg.F", "f.go", 3), Frame("pkg.G", "g.go", 9)]
    events = [Event(1, "ctr", "call", "pkg.F", "f.go", 3, 1, stack),
              Event(2, "ctr", "call", "pkg.F", "f.go", 3, 1, stack),
              Event(3, "ctr", "return", "pkg.F", "f.go", 5, 1, stack),
              Event(4, "ctr", "return", "pkg.F", "f.go", 5, 1, stack)]
    assert [(i.call.seq, i.ret.seq) for i in invocations(events)] == [(1, 4), (2, 3)]
