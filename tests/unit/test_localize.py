"""Unit tests for harness.graph.localize on the recorded delve runs of containerd v2.1.4.

The events come verbatim from tests/fixtures/delve/*/events.jsonl (real runs, see
tests/fixtures/delve/README.md). In the seed run every manifest annotation is
dropped by core/images.Config (it returns manifest.Config, not the manifest); in
the runtime-annotation run the --runtime flag annotation reaches the bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.graph.localize import Invocation, handle, invocations, localize
from harness.probes.events import Event, Frame, Sighting, read_events
from harness.versions import V2_LAYOUT

DELVE = Path(__file__).resolve().parents[1] / "fixtures" / "delve"
SEED = DELVE / "seed-ctr-run-v2.1.4"
RUNTIME = DELVE / "runtime-annotation-v2.1.4"
V2 = "github.com/containerd/containerd/v2"
IMAGES_CONFIG = f"{V2}/core/images.Config"
IMAGES_MANIFEST = f"{V2}/core/images.Manifest"

SEED_EVENTS = read_events(SEED / "events.jsonl")
RUNTIME_EVENTS = read_events(RUNTIME / "events.jsonl")
SEED_SENTINELS = json.loads((SEED / "sentinels.json").read_text())
RUNTIME_SENTINELS = json.loads((RUNTIME / "sentinels.json").read_text())
RUNTIME_FLAG = next(s for s in RUNTIME_SENTINELS if s["source"] == "runtime-flag")
RUNTIME_MANIFEST = next(s for s in RUNTIME_SENTINELS if s["source"] == "manifest")
FOO = next(s for s in SEED_SENTINELS if s["key"] == "com.test.foo")


def _localize(value: str, events: list[Event], reached_runtime, **kwargs):
    return localize(value, events, reached_runtime, sink_roots=V2_LAYOUT.sink_roots, rpc_joins=V2_LAYOUT.rpc_joins, **kwargs)


# --------------------------------------------------------------------------- seed run


@pytest.mark.parametrize("sentinel", SEED_SENTINELS, ids=lambda s: s["key"])
def test_seed_sentinels_are_dropped_by_images_config(sentinel):
    loc = _localize(sentinel["value"], SEED_EVENTS, reached_runtime=False)
    assert loc.status == "dropped"
    assert loc.value == sentinel["value"]
    assert loc.unknown == []
    assert len(loc.candidates) == 1
    top = loc.drop
    assert top is loc.candidates[0]
    assert top.function == IMAGES_CONFIG
    assert top.file == "core/images/image.go"
    assert top.line == 267
    assert top.process == "ctr"
    assert top.on_sink_path is True
    assert len(top.invocations) == 4
    # images.Manifest returned the value: it is not a candidate.
    assert IMAGES_MANIFEST not in {c.function for c in loc.candidates}

    paths = top.call_paths
    assert len(paths) == 4
    labels = [p for p in paths if f"{V2}/client.WithImageConfigLabels.func1" in p]
    args = [p for p in paths if f"{V2}/pkg/oci.WithImageConfigArgs.func1" in p]
    assert len(labels) == 1 and len(args) == 1
    assert f"{V2}/client.(*Client).NewContainer" in labels[0]
    assert f"{V2}/client.(*Client).NewContainer" in args[0]
    assert labels[0] == [f"{V2}/core/images.(*Image).Config", f"{V2}/client.(*image).Config",
                         f"{V2}/client.WithImageConfigLabels.func1", f"{V2}/client.(*Client).NewContainer",
                         f"{V2}/cmd/ctr/commands/run.NewContainer", f"{V2}/cmd/ctr/commands/run.init.func1"]
    # Paths are cut after the last containerd frame: no urfave/cli, main or runtime frames.
    assert all(frame.startswith(V2 + "/") for path in paths for frame in path)
    # The first path is the image check before the container is built (not under NewContainer).
    assert paths[0][3] == f"{V2}/client.(*image).IsUnpacked"

    assert top.reasons == [
        "on the path that builds the container (under client.(*Client).NewContainer)",
        "held the value in a local at return",
        "4 distinct call path(s), 4 invocation(s)",
        "last seen at event 37",
    ]
    assert top.score == (True, True, 4, 37)

    # Where the value was first seen: the earliest event holding it, images.Manifest's return.
    assert loc.first_seen == {"function": IMAGES_MANIFEST, "process": "ctr", "seq": 5, "kind": "return",
                              "where": [f'return ~r0.Annotations["{sentinel["key"]}"]',
                                        f'local m[0].m.Annotations["{sentinel["key"]}"]']}
    assert loc.last_carriers == [IMAGES_CONFIG, IMAGES_MANIFEST]


def test_seed_drop_evidence_names_the_local_and_the_missing_return():
    loc = _localize(FOO["value"], SEED_EVENTS, reached_runtime=False)
    evidence = loc.drop.evidence(f'{FOO["key"]}={FOO["value"]}')
    assert evidence == ('com.test.foo=bar-atr-manifest-a32ce600: local manifest.Annotations["com.test.foo"] at return; '
                        "absent from return values; not passed to any probed callee")
    assert "manifest.Annotations" in evidence and "absent from return values" in evidence


def test_seed_reached_runtime_means_no_drop():
    loc = _localize(FOO["value"], SEED_EVENTS, reached_runtime=True)
    assert loc.status == "reached"
    assert loc.drop is None
    assert loc.candidates == []
    assert loc.first_seen["function"] == IMAGES_MANIFEST
    assert loc.last_carriers == [IMAGES_CONFIG, IMAGES_MANIFEST]


def test_seed_unknown_runtime_copy_is_incomplete():
    loc = _localize(FOO["value"], SEED_EVENTS, reached_runtime=None)
    assert loc.status == "incomplete"
    assert loc.drop is None
    assert loc.unknown == ["the runtime's copy of config.json was not recorded"]


def test_seed_fault_is_incomplete_with_the_fault():
    loc = _localize(FOO["value"], SEED_EVENTS, reached_runtime=False, fault="delve died")
    assert loc.status == "incomplete"
    assert loc.unknown == ["delve died"]
    assert loc.candidates == [] and loc.first_seen is None and loc.drop is None


def test_value_nobody_saw():
    assert _localize("never-there", SEED_EVENTS, reached_runtime=False).status == "not-seen"
    loc = _localize("never-there", SEED_EVENTS, reached_runtime=True)
    assert loc.status == "reached" and loc.first_seen is None and loc.last_carriers == []


# --------------------------------------------------------------------------- runtime-annotation run


def test_runtime_flag_reaches_the_bundle():
    loc = _localize(RUNTIME_FLAG["value"], RUNTIME_EVENTS, reached_runtime=True)
    assert loc.status == "reached"
    assert loc.candidates == []
    assert loc.drop is None
    assert f"{V2}/core/runtime/v2.NewBundle" in loc.last_carriers
    assert loc.last_carriers == [
        f"{V2}/plugins/services/tasks.(*local).Create",
        f"{V2}/core/runtime/v2.(*TaskManager).Create",
        f"{V2}/core/runtime/v2.NewBundle",
        f"{V2}/cmd/ctr/commands/run.NewContainer",
        f"{V2}/client.(*Client).NewContainer",
    ]
    assert loc.first_seen == {"function": f"{V2}/cmd/ctr/commands/run.NewContainer", "process": "ctr", "seq": 1,
                              "kind": "call", "where": ["argument cliContext.parentContext.flagSet.args[5]"]}


def test_runtime_flag_not_reached_is_unresolved_because_the_spec_bytes_were_cut():
    loc = _localize(RUNTIME_FLAG["value"], RUNTIME_EVENTS, reached_runtime=False)
    assert loc.status == "unresolved"
    assert loc.candidates == []
    assert loc.unknown == [f"{V2}/core/metadata.(*containerStore).Create: held it, but "
                           "~r0.Spec.Value (json bytes, truncated at 64) could not be read"]


def test_runtime_manifest_annotation_is_dropped_at_images_config():
    loc = _localize(RUNTIME_MANIFEST["value"], RUNTIME_EVENTS, reached_runtime=False)
    assert loc.status == "dropped"
    assert [c.function for c in loc.candidates] == [IMAGES_CONFIG]
    assert (loc.drop.file, loc.drop.line, loc.drop.process) == ("core/images/image.go", 267, "ctr")
    assert loc.drop.evidence("k=v") == ('k=v: local manifest.Annotations["com.urunc.unikernel.hypervisor"] at return; '
                                        "absent from return values; not passed to any probed callee")


# --------------------------------------------------------------------------- invocations and handle


def _seed_invocations(function: str) -> list[Invocation]:
    return [i for i in invocations(SEED_EVENTS) if i.function == function]


def test_invocations_pair_calls_and_returns():
    configs = _seed_invocations(IMAGES_CONFIG)
    assert len(configs) == 4
    assert all(i.call is not None and i.ret is not None for i in configs)
    assert [(i.call.seq, i.ret.seq) for i in configs] == [(3, 6), (14, 17), (23, 26), (34, 37)]
    for invocation in configs:
        assert invocation.call.kind == "call" and invocation.ret.kind == "return"
        assert invocation.process == "ctr" and invocation.goroutine == 1
        assert invocation.callers == invocation.call.caller_stack == invocation.ret.caller_stack
        assert invocation.frames[0] == IMAGES_CONFIG
        assert invocation.first_seq == invocation.call.seq and invocation.last_seq == invocation.ret.seq
    every = invocations(SEED_EVENTS)
    # Functions with defers stop at two return locations in one return; the second stop
    # (after the deferred calls) becomes the invocation's return instead of an orphan.
    assert len(every) == 28
    assert all(i.call and i.ret for i in every)
    returns = {i.function.rsplit("/", 1)[-1]: i.ret.seq for i in every if i.call is not None}
    assert returns["metadata.(*containerStore).Create"] == 47 and returns["client.(*Client).NewContainer"] == 51
    assert returns["v2.NewBundle"] == 57 and returns["v2.(*TaskManager).Create"] == 59


def test_orphan_return_and_unmatched_call():
    stack = [Frame("pkg.F", "f.go", 3), Frame("pkg.G", "g.go", 9)]
    orphan = Event(4, "ctr", "return", "pkg.F", "f.go", 5, 1, stack)
    pending = Event(7, "ctr", "call", "pkg.F", "f.go", 3, 2, stack)
    result = invocations([pending, orphan])  # sorted by seq inside
    assert len(result) == 2
    assert result[0].call is None and result[0].ret is orphan
    assert result[0].first_seq == 4 and result[0].last_seq == 4
    assert result[0].callers == ("pkg.G",)
    assert result[1].call is pending and result[1].ret is None
    assert result[1].last_seq == 7


def test_invocations_pair_nested_recursion_innermost_first():
    stack = [Frame("pkg.F", "f.go", 3), Frame("pkg.G", "g.go", 9)]
    events = [Event(1, "ctr", "call", "pkg.F", "f.go", 3, 1, stack),
              Event(2, "ctr", "call", "pkg.F", "f.go", 3, 1, stack),
              Event(3, "ctr", "return", "pkg.F", "f.go", 5, 1, stack),
              Event(4, "ctr", "return", "pkg.F", "f.go", 5, 1, stack)]
    assert [(i.call.seq, i.ret.seq) for i in invocations(events)] == [(1, 4), (2, 3)]


def test_handle_images_manifest_passes_the_value_back():
    every = invocations(SEED_EVENTS)
    manifest = _seed_invocations(IMAGES_MANIFEST)[0]
    handling = handle(manifest, FOO["value"], every, V2_LAYOUT.rpc_joins)
    assert handling.passed == ['return value ~r0.Annotations["com.test.foo"]']
    assert handling.got == ['local m[0].m.Annotations["com.test.foo"] at return']
    assert handling.complete is True and handling.kept_for_caller is False
    assert handling.dropped is False


def test_handle_images_config_got_it_and_passed_nothing():
    every = invocations(SEED_EVENTS)
    config = _seed_invocations(IMAGES_CONFIG)[0]
    handling = handle(config, FOO["value"], every, V2_LAYOUT.rpc_joins)
    assert handling.got == ['local manifest.Annotations["com.test.foo"] at return']
    assert handling.passed == []
    assert handling.kept_for_caller is False
    assert handling.complete is True
    assert handling.unreadable_out == []
    assert handling.dropped is True


# --------------------------------------------------------------------------- hand-built events


M = "example.com/m"


def _stack(*functions: str) -> list[Frame]:
    return [Frame(f, "x.go", n) for n, f in enumerate(functions, start=1)]


def test_value_kept_for_the_caller_is_not_dropped():
    stack = _stack(f"{M}/pkg.Hold", f"{M}/pkg.Caller")
    seen = [Sighting("V", "argument", 'cfg.Labels["k"]')]
    events = [Event(1, "ctr", "call", f"{M}/pkg.Hold", "x.go", 1, 1, stack, list(seen)),
              Event(2, "ctr", "return", f"{M}/pkg.Hold", "x.go", 9, 1, stack, list(seen))]
    handling = handle(invocations(events)[0], "V", invocations(events))
    assert handling.kept_for_caller is True
    assert handling.got == ['argument cfg.Labels["k"] at entry']
    assert handling.passed == []
    assert handling.dropped is False
    loc = localize("V", events, reached_runtime=False)
    assert loc.status == "unresolved"
    assert loc.candidates == [] and loc.drop is None
    assert loc.first_seen == {"function": f"{M}/pkg.Hold", "process": "ctr", "seq": 1, "kind": "call",
                              "where": ['argument cfg.Labels["k"]']}


def test_value_written_through_a_pointer_argument_is_passed():
    stack = _stack(f"{M}/pkg.Fill", f"{M}/pkg.Caller")
    events = [Event(1, "ctr", "call", f"{M}/pkg.Fill", "x.go", 1, 1, stack),
              Event(2, "ctr", "return", f"{M}/pkg.Fill", "x.go", 9, 1, stack,
                    [Sighting("V", "argument", 's.Annotations["k"]'), Sighting("V", "local", "v")])]
    handling = handle(invocations(events)[0], "V", invocations(events))
    assert handling.passed == ['argument s.Annotations["k"] written before return']
    assert handling.got == ["local v at return"]
    assert localize("V", events, reached_runtime=False).status == "unresolved"


def test_value_passed_to_a_probed_callee_is_not_dropped_by_the_caller():
    outer = _stack(f"{M}/pkg.Outer", f"{M}/pkg.Main")
    inner = _stack(f"{M}/pkg.Inner", f"{M}/pkg.Outer", f"{M}/pkg.Main")
    events = [Event(1, "ctr", "call", f"{M}/pkg.Outer", "x.go", 1, 1, outer, [Sighting("V", "argument", "a")]),
              Event(2, "ctr", "call", f"{M}/pkg.Inner", "x.go", 1, 1, inner, [Sighting("V", "argument", "b")]),
              Event(3, "ctr", "return", f"{M}/pkg.Inner", "x.go", 5, 1, inner, [Sighting("V", "local", "c")]),
              Event(4, "ctr", "return", f"{M}/pkg.Outer", "x.go", 7, 1, outer)]
    every = invocations(events)
    outer_handling = handle(every[0], "V", every)
    assert outer_handling.passed == [f"passed to {M}/pkg.Inner (argument)"]
    loc = localize("V", events, reached_runtime=False)
    assert loc.status == "dropped"
    assert [c.function for c in loc.candidates] == [f"{M}/pkg.Inner"]
    assert loc.drop.line == 5 and loc.drop.on_sink_path is False
    assert loc.drop.reasons[0] == "not under the container-building path"


def test_rpc_join_counts_as_passing_on():
    client, handler = V2_LAYOUT.rpc_joins[0]
    events = [Event(1, "ctr", "call", client, "c.go", 1, 1, _stack(client), [Sighting("V", "argument", "c.Labels")]),
              Event(2, "containerd", "call", handler, "h.go", 1, 9, _stack(handler),
                    [Sighting("V", "argument", "req.Container.Labels")]),
              Event(3, "ctr", "return", client, "c.go", 4, 1, _stack(client), [Sighting("V", "local", "r")])]
    every = invocations(events)
    handling = handle(every[0], "V", every, V2_LAYOUT.rpc_joins)
    assert handling.passed == [f"sent to the daemon: {handler} received it"]
    assert handle(every[0], "V", every).passed == []  # without the join nothing went on
    assert localize("V", events, reached_runtime=False, rpc_joins=V2_LAYOUT.rpc_joins).status == "unresolved"


def test_return_not_observed_is_unknown_not_dropped():
    stack = _stack(f"{M}/pkg.F")
    events = [Event(1, "ctr", "call", f"{M}/pkg.F", "x.go", 1, 1, stack, [Sighting("V", "argument", "a")])]
    loc = localize("V", events, reached_runtime=False)
    assert loc.status == "unresolved"
    assert loc.unknown == [f"{M}/pkg.F (return not observed)"]


def test_truncated_json_output_is_unknown_but_binary_bytes_are_not():
    stack = _stack(f"{M}/pkg.F")

    def run(unreadable: str):
        events = [Event(1, "ctr", "call", f"{M}/pkg.F", "x.go", 1, 1, stack),
                  Event(2, "ctr", "return", f"{M}/pkg.F", "x.go", 9, 1, stack, [Sighting("V", "local", "v")],
                        unreadable=[unreadable])]
        return localize("V", events, reached_runtime=False)

    json_cut = run("return:~r0.Spec.Value (json bytes, truncated at 64)")
    assert json_cut.status == "unresolved"
    assert json_cut.unknown == [f"{M}/pkg.F: held it, but ~r0.Spec.Value (json bytes, truncated at 64) could not be read"]
    string_cut = run("return:~r0.Name (truncated at 512)")
    assert string_cut.status == "unresolved"
    binary = run("return:~r0.data (bytes, truncated at 64)")
    assert binary.status == "dropped" and binary.unknown == []
    local_cut = run("local:tmp (truncated at 512)")  # a local is not an output
    assert local_cut.status == "dropped"


def test_call_paths_of_a_drop_outside_core_are_cut_at_the_module():
    function = f"{V2}/client.WithImageConfigLabels.func1"
    stack = [Frame(function, "client/container_opts.go", 117),
             Frame(f"{V2}/client.(*Client).NewContainer", "client/client.go", 305),
             Frame(f"{V2}/cmd/ctr/commands/run.NewContainer", "cmd/ctr/commands/run/run_unix.go", 150),
             Frame("main.main", "cmd/ctr/main.go", 32),
             Frame("runtime.main", "/usr/local/go/src/runtime/proc.go", 290)]
    events = [Event(1, "ctr", "call", function, "client/container_opts.go", 117, 1, stack),
              Event(2, "ctr", "return", function, "client/container_opts.go", 141, 1, stack,
                    [Sighting("V", "local", 'image.Labels["k"]')])]
    loc = localize("V", events, reached_runtime=False, sink_roots=V2_LAYOUT.sink_roots)
    assert loc.status == "dropped"
    assert loc.drop.call_paths == [[f"{V2}/client.(*Client).NewContainer", f"{V2}/cmd/ctr/commands/run.NewContainer"]]


def test_truncated_string_under_a_key_containing_bytes_is_still_unknown():
    stack = _stack(f"{M}/pkg.F")
    events = [Event(1, "ctr", "call", f"{M}/pkg.F", "x.go", 1, 1, stack),
              Event(2, "ctr", "return", f"{M}/pkg.F", "x.go", 9, 1, stack, [Sighting("V", "local", "v")],
                    unreadable=['return:~r0.Labels["io.bytes.size"] (truncated at 512)'])]
    assert localize("V", events, reached_runtime=False).status == "unresolved"
