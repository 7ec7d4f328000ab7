"""Unit tests for harness.probes.delve.translate, harness.probes.events and the delve RPC client.

The threads in tests/fixtures/delve/raw-threads.jsonl.gz are exactly what delve's
RPCServer.Command{continue} returned in real runs of containerd v2.1.4 (see
tests/fixtures/delve/README.md). Nothing here starts delve: the RPC client talks
to a tiny fake JSON-RPC server on a unix socket.
"""

from __future__ import annotations

import gzip
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.probes.delve.backend import needs_completion, read_cut_values, reload_cut_containers
from harness.probes.delve.rpc import DelveClient, DelveRPCError, LoadConfig
from harness.probes.delve.translate import (
    FLAG_RETURN_ARGUMENT,
    KIND_FUNC,
    KIND_INTERFACE,
    KIND_MAP,
    KIND_POINTER,
    KIND_SLICE,
    KIND_STRING,
    KIND_STRUCT,
    find_sightings,
    leaves,
    scan,
    thread_scans,
    thread_to_event,
)
from harness.probes.events import SCHEMA_VERSION, Event, Frame, Sighting, Unreadable, read_events, write_events
from harness.probes.matching import SentinelMatcher

DELVE = Path(__file__).resolve().parents[1] / "fixtures" / "delve"
SEED = DELVE / "seed-ctr-run-v2.1.4"
RUNTIME = DELVE / "runtime-annotation-v2.1.4"
SOURCE_ROOT = "/var/cache/annotrace/builds/containerd-v2.1.4-v2-f7face8ab08f0fd4/src"
V2 = "github.com/containerd/containerd/v2"

IMAGES_CONFIG = f"{V2}/core/images.Config"
IMAGES_MANIFEST = f"{V2}/core/images.Manifest"
APPLY_OPTS = f"{V2}/pkg/oci.ApplyOpts"
LOCAL_CREATE = f"{V2}/plugins/services/containers.(*local).Create"


# --------------------------------------------------------------------------- fixtures


def _sentinels(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "sentinels.json").read_text())


SEED_SENTINELS = _sentinels(SEED)
RUNTIME_SENTINELS = _sentinels(RUNTIME)
RUNTIME_FLAG = next(s["value"] for s in RUNTIME_SENTINELS if s["source"] == "runtime-flag")
RUNTIME_MANIFEST = next(s["value"] for s in RUNTIME_SENTINELS if s["source"] == "manifest")

# Which run (and process) each recorded thread came from, by its function.
THREAD_ORIGIN = {
    IMAGES_CONFIG: (SEED_SENTINELS, "ctr"),
    IMAGES_MANIFEST: (SEED_SENTINELS, "ctr"),
    APPLY_OPTS: (RUNTIME_SENTINELS, "ctr"),
    LOCAL_CREATE: (RUNTIME_SENTINELS, "containerd"),
}


def _raw_threads() -> list[dict]:
    with gzip.open(DELVE / "raw-threads.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


RAW = _raw_threads()


@pytest.fixture(scope="module")
def events() -> dict[str, Event]:
    """One event per raw thread, keyed by function name."""
    out = {}
    for seq, record in enumerate(RAW, start=1):
        thread = record["thread"]
        function = thread["function"]["name"]
        sentinels, process = THREAD_ORIGIN[function]
        out[function] = thread_to_event(thread, process, seq, [s["value"] for s in sentinels], 1, 0.0, SOURCE_ROOT)
    return out


def test_raw_threads_are_the_four_documented_ones():
    functions = [(r["source"].split("-", 2)[2].rsplit("-", 1)[0], r["thread"]["function"]["name"]) for r in RAW]
    assert functions == [
        ("seed-ctr-run", IMAGES_CONFIG),
        ("seed-ctr-run", IMAGES_MANIFEST),
        ("runtime-annotation", APPLY_OPTS),
        ("runtime-annotation", LOCAL_CREATE),
    ]
    # Every thread file lives under the one build's source root.
    assert {r["thread"]["file"].startswith(SOURCE_ROOT + "/") for r in RAW} == {True}
    assert {r["source"] for r in RAW if "seed" in r["source"]} == {"20261201-225017-seed-ctr-run-bc116f"}
    assert {r["source"] for r in RAW if "runtime" in r["source"]} == {"20261201-225035-runtime-annotation-01d322"}


# --------------------------------------------------------------------------- real threads


def test_images_config_return_holds_the_manifest_only_in_a_local(events):
    event = events[IMAGES_CONFIG]
    assert event.kind == "return"
    assert event.function == IMAGES_CONFIG
    assert event.function.endswith("core/images.Config")
    assert event.file == "core/images/image.go"
    assert event.line == 267
    assert event.process == "ctr"
    assert event.goroutine == 1
    assert event.seq == 1 and event.probe_pass == 1 and event.time == 0.0 and event.backend == "delve"

    expected = {Sighting(s["value"], "local", f'manifest.Annotations["{s["key"]}"]') for s in SEED_SENTINELS}
    assert set(event.sightings) == expected
    assert len(event.sightings) == 4
    # The returned Descriptor (~r0) carries no annotation of the manifest.
    assert [s for s in event.sightings if s.where == "return"] == []
    assert [s for s in event.sightings if s.where == "argument"] == []
    for sentinel in SEED_SENTINELS:
        assert event.holds(sentinel["value"]) == [
            Sighting(sentinel["value"], "local", f'manifest.Annotations["{sentinel["key"]}"]')]
    # Everything it held loaded within the limits: nothing is unknown.
    assert event.unreadable == []


def test_images_config_stack_is_relative_inside_the_source_and_verbatim_outside(events):
    stack = events[IMAGES_CONFIG].stack
    assert stack[0] == Frame(IMAGES_CONFIG, "core/images/image.go", 267)
    assert stack[1] == Frame(f"{V2}/core/images.(*Image).Config", "core/images/image.go", 108)
    assert stack[2] == Frame(f"{V2}/core/images.(*Image).RootFS", "core/images/image.go", 116)
    assert stack[3] == Frame(f"{V2}/client.(*image).RootFS", "client/image.go", 168)
    assert stack[5] == Frame(f"{V2}/cmd/ctr/commands/run.NewContainer", "cmd/ctr/commands/run/run_unix.go", 150)
    assert stack[7] == Frame("github.com/urfave/cli/v2.(*Command).Run",
                             "/root/go/pkg/mod/github.com/urfave/cli/v2@v2.27.6/command.go", 276)
    assert stack[-1] == Frame("runtime.goexit", "/usr/local/go/src/runtime/asm_amd64.s", 1771)
    assert len(stack) == 14
    assert events[IMAGES_CONFIG].caller_stack[:2] == (f"{V2}/core/images.(*Image).Config",
                                                        f"{V2}/core/images.(*Image).RootFS")


def test_images_manifest_return_passes_the_annotations_back(events):
    event = events[IMAGES_MANIFEST]
    assert event.kind == "return"
    assert event.file == "core/images/image.go"
    assert event.line == 254
    assert event.stack[1] == Frame(IMAGES_CONFIG, "core/images/image.go", 263)
    returned = {s for s in event.sightings if s.where == "return"}
    assert returned == {Sighting(s["value"], "return", f'~r0.Annotations["{s["key"]}"]') for s in SEED_SENTINELS}
    assert all(s.path.startswith("~r0.Annotations[") for s in returned)
    # At this stop the walk's locals are already out of scope: only the result holds the values.
    assert [s for s in event.sightings if s.where == "local"] == []
    assert len(event.sightings) == 4


def test_apply_opts_return_sees_the_runtime_flag_in_the_spec_argument(events):
    event = events[APPLY_OPTS]
    assert event.kind == "return"
    assert event.file == "pkg/oci/spec.go"
    assert event.line == 115
    option = f"{V2}/pkg/oci.WithAnnotations.func1"
    assert event.sightings == [
        Sighting(RUNTIME_FLAG, "argument", 's.Annotations["com.urunc.unikernel.hypervisor"]'),
        Sighting(RUNTIME_FLAG, "argument", f'opts[5]{{{option}}}.annotations["com.urunc.unikernel.hypervisor"]',
                 closures=(option,))]
    assert event.holds(RUNTIME_MANIFEST) == []
    assert event.stack[1].function == f"{V2}/client.WithSpec.func1"
    assert event.stack[2] == Frame(f"{V2}/client.(*Client).NewContainer", "client/client.go", 326)


def test_local_create_call_marks_truncated_spec_json_and_bbolt_bytes(events):
    event = events[LOCAL_CREATE]
    assert event.kind == "call"
    assert event.process == "containerd"
    assert event.goroutine == 144
    assert event.file == "plugins/services/containers/local.go"
    assert event.line == 121
    cuts = {u.path: u for u in event.unreadable}
    # The spec travels as marshalled JSON, cut at MaxArrayValues: the collector reads it in full.
    spec = cuts["req.Container.Spec.Value (bytes)"]
    assert (spec.where, spec.reason, spec.content, spec.loaded) == ("argument", "truncated", "json-bytes", 32)
    assert spec.length == 2918 and spec.may_hide_text
    # bbolt's memory-mapped pages are binary: truncated, but not worth reading.
    binary = sorted(p for p, u in cuts.items() if u.content == "bytes")
    assert binary == ["l.db.db.data (bytes)", "l.db.db.dataref (bytes)"]
    assert not any(cuts[p].may_hide_text for p in binary)
    assert sum(u.content == "map" for u in event.unreadable) == 3
    # Neither sentinel is in the first 32 bytes of the spec.
    assert event.sightings == []
    assert event.stack[1] == Frame(f"{V2}/plugins/services/containers.(*service).Create",
                                   "plugins/services/containers/service.go", 94)


def test_local_create_spec_bytes_are_read_in_full_from_memory():
    """What the collector does while the target is stopped: read the cut JSON by address and length."""
    thread = next(r["thread"] for r in RAW if r["thread"]["function"]["name"] == LOCAL_CREATE)
    assert needs_completion(thread)
    matcher = SentinelMatcher([RUNTIME_FLAG])
    spec_text = f'{{"ociVersion":"1.2.1","annotations":{{"com.urunc.unikernel.hypervisor":"{RUNTIME_FLAG}"}}}}'

    class Memory:
        def __init__(self):
            self.reads = []

        def examine_memory(self, address, length):
            self.reads.append((address, length))
            return (spec_text.encode() + b" " * length)[:length]

    memory = Memory()
    event = thread_to_event(thread, "containerd", 9, matcher, 1, 0.0, SOURCE_ROOT,
                            complete=lambda scans: read_cut_values(memory, scans, matcher))
    assert Sighting(RUNTIME_FLAG, "argument", "req.Container.Spec.Value (bytes)") in event.sightings
    assert "req.Container.Spec.Value (bytes)" not in {u.path for u in event.unreadable}
    assert all(length <= 1 << 16 for _, length in memory.reads)  # delve's ExamineMemory limit per call


def test_local_create_result_parameters_at_entry_are_not_searched():
    thread = next(r["thread"] for r in RAW if r["thread"]["function"]["name"] == LOCAL_CREATE)
    flagged = [a["name"] for a in thread["breakPointInfo"]["arguments"] if a["flags"] & FLAG_RETURN_ARGUMENT]
    assert flagged == ["~r0", "~r1"]
    event = thread_to_event(thread, "containerd", 9, [RUNTIME_FLAG], 1, 0.0, SOURCE_ROOT)
    assert not any(u.path.startswith("~r") for u in event.unreadable)


def test_without_source_root_paths_stay_absolute():
    thread = RAW[0]["thread"]
    event = thread_to_event(thread, "ctr", 3, [], 2, 1.5)
    assert event.file == f"{SOURCE_ROOT}/core/images/image.go"
    assert event.stack[0].file == f"{SOURCE_ROOT}/core/images/image.go"
    assert event.sightings == []
    assert event.probe_pass == 2 and event.time == 1.5 and event.seq == 3


# --------------------------------------------------------------------------- hand-built variables


def string(name: str, value: str, length: int | None = None) -> dict:
    return {"name": name, "kind": KIND_STRING, "type": "string", "value": value,
            "len": len(value.encode()) if length is None else length}


def string_map(name: str, items: list[tuple[str, str]]) -> dict:
    children = []
    for key, value in items:
        children += [string("", key), string("", value)]
    return {"name": name, "kind": KIND_MAP, "type": "map[string]string", "len": len(items), "children": children}


def struct(name: str, *fields: dict) -> dict:
    return {"name": name, "kind": KIND_STRUCT, "type": "main.T", "children": list(fields)}


def pointer(name: str, target: dict) -> dict:
    return {"name": name, "kind": KIND_POINTER, "type": "*main.T", "children": [target]}


def interface(name: str, target: dict) -> dict:
    return {"name": name, "kind": KIND_INTERFACE, "type": "interface {}", "children": [target]}


def byte_slice(name: str, data: bytes, length: int | None = None) -> dict:
    children = [{"name": "", "kind": 8, "type": "uint8", "value": str(b)} for b in data]
    return {"name": name, "kind": KIND_SLICE, "type": "[]uint8", "len": len(data) if length is None else length,
            "children": children}


def texts(variable: dict, path: str) -> list[tuple[str, str | None]]:
    return [(leaf.path, leaf.text) for leaf in leaves(variable, path)]


def test_map_paths_use_json_quoted_keys_and_mark_keys():
    variable = string_map("Annotations", [("com.test.foo", "SENT-1"), ('we"ird\\key', "plain")])
    assert texts(variable, "m.Annotations") == [
        ('m.Annotations["com.test.foo"] (key)', "com.test.foo"),
        ('m.Annotations["com.test.foo"]', "SENT-1"),
        ('m.Annotations["we\\"ird\\\\key"] (key)', 'we"ird\\key'),
        ('m.Annotations["we\\"ird\\\\key"]', "plain"),
    ]


def test_map_with_non_string_keys_numbers_them():
    variable = {"name": "m", "kind": KIND_MAP, "type": "map[int]string", "len": 2, "children": [
        {"name": "", "kind": 2, "type": "int", "value": "7"}, string("", "a"),
        {"name": "", "kind": 2, "type": "int", "value": "9"}, string("", "b")]}
    assert texts(variable, "m") == [('m["#0"] (key)', "#0"), ('m["#0"]', "a"), ('m["#1"] (key)', "#1"), ('m["#1"]', "b")]


def test_pointer_and_interface_keep_the_path_of_what_they_point_to():
    spec = struct("", string_map("Annotations", [("k", "SENT")]), string("Hostname", "h"))
    assert texts(pointer("s", spec), "s") == [
        ('s.Annotations["k"] (key)', "k"), ('s.Annotations["k"]', "SENT"), ("s.Hostname", "h")]
    assert texts(interface("v", pointer("", spec)), "v") == texts(pointer("s", spec), "v")


def test_slices_of_non_bytes_are_indexed():
    variable = {"name": "args", "kind": KIND_SLICE, "type": "[]string", "len": 2,
                "children": [string("", "run"), string("", "SENT")]}
    assert texts(variable, "args") == [("args[0]", "run"), ("args[1]", "SENT")]


def test_byte_slice_is_decoded_to_text():
    variable = byte_slice("Value", b'{"a":"SENT"}')
    assert texts(variable, "req.Spec.Value") == [("req.Spec.Value (bytes)", '{"a":"SENT"}')]
    sightings, unreadable = find_sightings([variable], "argument", ["SENT"])
    assert sightings == [Sighting("SENT", "argument", "Value (bytes)")]
    assert unreadable == []


def test_truncated_byte_slices_are_json_text_or_binary():
    json_bytes = dict(byte_slice("Value", b'  {"ociVersion"', length=2918), base=4096)
    [leaf] = leaves(json_bytes, "v")
    assert (leaf.path, leaf.text, leaf.cut.content, leaf.cut.loaded, leaf.cut.length) == \
        ("v (bytes)", '  {"ociVersion"', "json-bytes", 15, 2918)
    assert (leaf.address, leaf.length) == (4096, 2918)  # where a memory read completes it
    binary = byte_slice("data", b"\x00\x01\xed", length=131072)
    [leaf] = leaves(binary, "d")
    assert leaf.cut.content == "bytes" and not leaf.cut.may_hide_text
    proto = byte_slice("v", b"\n.types.containerd.io/opencontainers/runtime-spec", length=900)
    assert next(leaves(proto, "v")).cut.content == "text"  # a protobuf Any wrapping JSON


def test_truncated_string_is_a_typed_unreadable_record():
    variable = dict(string("Labels", "abcdef", length=4096), base=8192)
    [leaf] = leaves(variable, "c.Labels")
    assert (leaf.path, leaf.text, leaf.address, leaf.length) == ("c.Labels", "abcdef", 8192, 4096)
    sightings, unreadable = find_sightings([variable], "local", ["abc", "zzz"])
    assert sightings == [Sighting("abc", "local", "Labels")]
    assert unreadable == [Unreadable("local", "Labels", "truncated", "text", 6, 4096)]
    assert unreadable[0].describe() == "local Labels (text, truncated at 6 of 4096)"


def test_unreadable_variable_is_unknown_never_a_sighting():
    variable = dict(string("secret", "SENT"), unreadable="could not read string at 0x0")
    assert texts(variable, "secret") == [("secret", None)]
    sightings, unreadable = find_sightings([variable, string("ok", "xSENTx")], "return", ["SENT"])
    assert sightings == [Sighting("SENT", "return", "ok")]
    assert [(u.where, u.path, u.reason) for u in unreadable] == [("return", "secret", "error")]


def test_find_sightings_names_missing_variables_and_dedups():
    nameless = string("", "SENT")
    twice = pointer("p", struct("", string("A", "SENT"), string("A", "SENT")))
    sightings, _ = find_sightings([nameless, twice], "argument", ["SENT"])
    assert sightings == [Sighting("SENT", "argument", "?"), Sighting("SENT", "argument", "p.A")]


def closure(name: str, function: str, *captured: dict, length: int | None = None) -> dict:
    return {"name": name, "kind": KIND_FUNC, "type": "pkg/oci.SpecOpts", "value": function, "addr": 0xc000010,
            "len": len(captured) if length is None else length, "children": list(captured)}


def test_a_closure_shows_what_it_captured_under_its_name():
    option = closure("", f"{V2}/pkg/oci.WithAnnotations.func1", string_map("annotations", [("k", "SENT")]))
    opts = {"name": "opts", "kind": KIND_SLICE, "type": "[]pkg/oci.SpecOpts", "len": 1, "children": [option]}
    [sighting] = scan([opts], "argument", SentinelMatcher(["SENT"])).sightings
    assert sighting.path == f'opts[0]{{{V2}/pkg/oci.WithAnnotations.func1}}.annotations["k"]'
    assert sighting.closures == (f"{V2}/pkg/oci.WithAnnotations.func1",)


def test_a_closure_cut_by_the_load_depth_is_loaded_again_by_type_and_address():
    function = f"{V2}/pkg/oci.WithAnnotations.func1"
    cut = closure("~r0", function, length=1)  # captured variables beyond the depth: none loaded
    found = scan([cut], "return", SentinelMatcher(["SENT"]))
    [record] = found.unreadable
    assert (record.content, record.detail, record.vtype) == ("closure", function, "pkg/oci.SpecOpts")
    [leaf] = found.reload

    class Delve:
        def __init__(self):
            self.expressions = []

        def eval(self, goroutine, frame, expression, cfg):
            self.expressions.append(expression)
            return closure("", function, string_map("annotations", [("k", "SENT")]))

    delve = Delve()
    reload_cut_containers(delve, 7, [found], SentinelMatcher(["SENT"]))
    assert delve.expressions == ['*(*"pkg/oci.SpecOpts")(0xc000010)']
    assert found.unreadable == []
    assert [s.path for s in found.sightings] == [f'~r0{{{function}}}.annotations["k"]']


def _thread(returning: bool, arguments: list[dict], locals_: list[dict] | None = None,
            return_values: list[dict] | None = None) -> dict:
    root = "/build/src"
    return {
        "file": f"{root}/pkg/f.go", "line": 42 if returning else 10, "goroutineID": 7,
        "function": {"name": "example.com/m/pkg.F"},
        "breakPoint": {"traceReturn": returning},
        "breakPointInfo": {
            "arguments": arguments,
            "locals": locals_ or [],
            "stacktrace": [
                {"function": {"name": "example.com/m/pkg.F"}, "file": f"{root}/pkg/f.go", "line": 42},
                {"function": {"name": "example.com/m/pkg.G"}, "file": f"{root}/pkg/g.go", "line": 5},
                {"function": {"name": "runtime.goexit"}, "file": "/usr/local/go/src/runtime/asm.s", "line": 1},
            ],
        },
        "ReturnValues": return_values,
    }


def test_result_parameters_at_entry_are_garbage_and_locals_are_ignored():
    result = dict(string("~r0", "SENT"), flags=FLAG_RETURN_ARGUMENT)
    thread = _thread(False, [string("name", "plain"), result], locals_=[string("tmp", "SENT")])
    event = thread_to_event(thread, "ctr", 5, ["SENT"], 1, 0.0, "/build/src")
    assert event.result_types == []
    assert event.kind == "call"
    assert event.sightings == []
    assert event.unreadable == []
    assert event.file == "pkg/f.go" and event.line == 10 and event.goroutine == 7
    assert [f.file for f in event.stack] == ["pkg/f.go", "pkg/g.go", "/usr/local/go/src/runtime/asm.s"]
    assert event.caller_stack == ("example.com/m/pkg.G", "runtime.goexit")


def test_at_return_results_come_from_flagged_arguments_or_return_values():
    result = dict(string("~r0", "SENT-R"), flags=FLAG_RETURN_ARGUMENT)
    thread = _thread(True, [string("name", "SENT-A"), result], locals_=[string("tmp", "SENT-L")])
    event = thread_to_event(thread, "ctr", 6, ["SENT-A", "SENT-R", "SENT-L"], 1, 0.0, "/build/src")
    assert event.kind == "return" and event.line == 42
    assert event.sightings == [Sighting("SENT-A", "argument", "name"), Sighting("SENT-R", "return", "~r0"),
                               Sighting("SENT-L", "local", "tmp")]
    # ReturnValues (loaded by delve at the return) win over the flagged arguments.
    thread = _thread(True, [result], return_values=[dict(string("~r0", "OTHER"), flags=FLAG_RETURN_ARGUMENT)])
    event = thread_to_event(thread, "ctr", 7, ["SENT-R", "OTHER"], 1, 0.0)
    assert event.sightings == [Sighting("OTHER", "return", "~r0")]
    assert event.result_types == ["string"]


def test_a_closure_s_locals_captured_by_value_or_by_reference_are_told_apart_at_its_return():
    """Captured variables are declared on or before the func literal's line (its parameters' line);
    by reference they also escaped to the heap (delve flag 1)."""
    thread = _thread(True, [dict(string("ctx", "x"), DeclLine=160)],
                     locals_=[dict(string("image", "SENT-V"), DeclLine=153),
                              dict(string("m", "SENT-R"), DeclLine=160, flags=1),
                              dict(string("manifest", "SENT-L"), DeclLine=171)])
    thread["function"]["name"] = "example.com/m/pkg.F.func1"
    returning, scans, types, captured = thread_scans(thread, SentinelMatcher(["SENT-V", "SENT-R", "SENT-L"]))
    assert returning and captured == ["m"]
    wheres = {s.value: s.where for found in scans for s in found.sightings}
    assert wheres == {"SENT-V": "captured", "SENT-R": "local", "SENT-L": "local"}


def test_thread_without_function_takes_the_innermost_frame():
    thread = _thread(False, [])
    thread["function"] = None
    event = thread_to_event(thread, "ctr", 1, [], 1, 0.0)
    assert event.function == "example.com/m/pkg.F"
    thread["breakPointInfo"]["stacktrace"] = []
    assert thread_to_event(thread, "ctr", 1, [], 1, 0.0).function == "?"


# --------------------------------------------------------------------------- event schema


def _event(seq: int = 1) -> Event:
    return Event(seq=seq, process="ctr", kind="return", function=IMAGES_CONFIG, file="core/images/image.go",
                 line=267, goroutine=1,
                 stack=[Frame(IMAGES_CONFIG, "core/images/image.go", 267),
                        Frame(f"{V2}/core/images.(*Image).Config", "core/images/image.go", 108)],
                 sightings=[Sighting("SENT", "local", 'manifest.Annotations["com.test.foo"]'),
                            Sighting("SENT", "return", "~r0{f}.x", "case", "sent", ("f",))],
                 unreadable=[Unreadable("argument", "x", "truncated", "text", 3, 10)],
                 result_types=["ocispec.Descriptor", "error"], probe_pass=2, time=1.25)


def test_event_json_round_trip():
    event = _event()
    data = event.to_json()
    assert data["schema"] == SCHEMA_VERSION == 2
    assert data["stack"][1] == {"function": f"{V2}/core/images.(*Image).Config", "file": "core/images/image.go",
                                "line": 108}
    assert data["sightings"][0] == {"value": "SENT", "where": "local", "path": 'manifest.Annotations["com.test.foo"]',
                                    "match": "exact", "text": "", "closures": ()}
    assert data["unreadable"] == [{"where": "argument", "path": "x", "reason": "truncated", "content": "text",
                                   "loaded": 3, "length": 10, "detail": "", "vtype": ""}]
    back = Event.from_json(json.loads(json.dumps(data)))
    assert back == event
    assert isinstance(back.stack[0], Frame) and isinstance(back.sightings[0], Sighting)
    assert back.holds("SENT") == [event.sightings[0]] and back.variants("SENT") == [event.sightings[1]]
    assert back.returns_data


def test_write_and_read_events(tmp_path):
    path = tmp_path / "events.jsonl"
    events = [_event(1), _event(2)]
    write_events(path, events)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["seq"] == 2
    path.write_text(path.read_text() + "\n\n")  # blank lines are skipped
    assert read_events(path) == events


def test_from_json_rejects_another_schema_version():
    data = _event().to_json()
    data["schema"] = 1
    with pytest.raises(ValueError, match="event schema 1 is not 2: record the run again"):
        Event.from_json(data)
    del data["schema"]
    with pytest.raises(ValueError, match="event schema None is not 2"):
        Event.from_json(data)


def test_recorded_events_files_read_back():
    for run_dir in (SEED, RUNTIME):
        events = read_events(run_dir / "events.jsonl")
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        assert {e.backend for e in events} == {"delve"}
        assert {e.process for e in events} == {"ctr", "containerd", "containerd-shim-runc-v2"}


# --------------------------------------------------------------------------- JSON-RPC client


class FakeDelve:
    """Accepts one connection; answers each request with the next scripted list of chunks."""

    def __init__(self, directory: Path, replies: list[list[bytes]]) -> None:
        self.path = directory / "dlv.sock"
        if len(str(self.path)) > 100:  # AF_UNIX path limit
            self._tmp = tempfile.TemporaryDirectory(prefix="dlv")
            self.path = Path(self._tmp.name) / "dlv.sock"
        self.replies = replies
        self.requests: list[dict] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        decoder = json.JSONDecoder()
        buffer = ""
        with conn:
            for chunks in self.replies:
                while True:
                    try:
                        request, end = decoder.raw_decode(buffer.lstrip())
                        buffer = buffer.lstrip()[end:]
                        break
                    except json.JSONDecodeError:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data.decode()
                self.requests.append(request)
                for index, chunk in enumerate(chunks):
                    if index:
                        time.sleep(0.05)  # let the client read the first part alone
                    conn.sendall(chunk)
        self.server.close()

    def join(self) -> None:
        self.thread.join(timeout=5)


def _reply(request_id: int, result=None, error=None) -> bytes:
    return json.dumps({"id": request_id, "result": result, "error": error}).encode()


def _halves(data: bytes) -> list[bytes]:
    middle = len(data) // 2
    return [data[:middle], data[middle:]]


def test_client_reads_memory_as_delve_sends_it(tmp_path):
    import base64

    server = FakeDelve(tmp_path, [[_reply(1, {"Mem": base64.b64encode(b"abc").decode(), "IsLittleEndian": True})]])
    client = DelveClient(server.address, timeout=5)
    try:
        assert client.examine_memory(0x1000, 3) == b"abc"
    finally:
        client.close()
    server.join()
    assert server.requests[0]["params"] == [{"Address": 0x1000, "Length": 3}]


def test_client_reads_a_reply_split_in_two_and_raises_on_error(tmp_path):
    funcs = [IMAGES_CONFIG, IMAGES_MANIFEST, f"{V2}/core/images.(*Image).Config"]
    first = _reply(1, {"Funcs": funcs})
    server = FakeDelve(tmp_path, [_halves(first), [_reply(2, None, "boom")]])
    client = DelveClient(server.address, timeout=5)
    try:
        assert client.list_functions(r"^github\.com/containerd/.*images\.", follow_calls=2) == funcs
        with pytest.raises(DelveRPCError, match="boom") as info:
            client.get_version()
        assert str(info.value) == "GetVersion: boom"
    finally:
        client.close()
    server.join()
    assert server.requests[0] == {"method": "RPCServer.ListFunctions",
                                  "params": [{"Filter": r"^github\.com/containerd/.*images\.", "FollowCalls": 2}],
                                  "id": 1}
    assert server.requests[1] == {"method": "RPCServer.GetVersion", "params": [{}], "id": 2}


def test_client_sends_breakpoints_and_load_configs_as_given(tmp_path):
    breakpoint = {"functionName": IMAGES_CONFIG, "continue": True, "line": -1, "stacktrace": 50,
                  "LoadArgs": LoadConfig().to_json()}
    created = dict(breakpoint, id=7)
    server = FakeDelve(tmp_path, [
        [_reply(1, {"Breakpoint": created})],
        [_reply(2, {"State": {"Running": False, "Threads": []}})],
        [_reply(3, {})],
    ])
    client = DelveClient(server.address, timeout=5)
    try:
        assert client.create_breakpoint(breakpoint) == created
        assert client.continue_(LoadConfig(MaxStringLen=64)) == {"Running": False, "Threads": []}
        assert client.list_functions("nothing") == []  # a result without Funcs
    finally:
        client.close()
    server.join()
    assert server.requests[0]["method"] == "RPCServer.CreateBreakpoint"
    assert server.requests[0]["params"] == [{"Breakpoint": breakpoint, "LocExpr": "", "SubstitutePathRules": None,
                                             "Suspended": False}]
    assert server.requests[0]["params"][0]["Breakpoint"]["continue"] is True
    assert server.requests[1] == {"method": "RPCServer.Command", "id": 2, "params": [{
        "name": "continue",
        "ReturnInfoLoadConfig": {"FollowPointers": True, "MaxVariableRecurse": 3, "MaxStringLen": 64,
                                 "MaxArrayValues": 64, "MaxStructFields": -1}}]}
    assert server.requests[2]["params"] == [{"Filter": "nothing", "FollowCalls": 0}]


def test_client_reports_a_closed_connection(tmp_path):
    server = FakeDelve(tmp_path, [[]])  # reads the request, answers nothing, hangs up
    client = DelveClient(server.address, timeout=5)
    try:
        with pytest.raises(DelveRPCError, match="delve closed the connection"):
            client.state()
    finally:
        client.close()
    server.join()
    assert server.requests == [{"method": "RPCServer.State", "params": [{"NonBlocking": True}], "id": 1}]


def test_client_keeps_utf8_split_across_chunks(tmp_path):
    body = json.dumps({"id": 1, "result": {"Funcs": ["pkg.é"]}, "error": None}, ensure_ascii=False).encode()
    cut = body.index("é".encode()) + 1  # inside the two-byte character
    server = FakeDelve(tmp_path, [[body[:cut], body[cut:]]])
    client = DelveClient(server.address, timeout=5)
    try:
        assert client.list_functions("x") == ["pkg.é"]
    finally:
        client.close()
        server.join()
