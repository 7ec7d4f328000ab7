"""The delve backend on a real build: the seed's verdict, no drop for a runtime annotation,
refinement from a plan that watches too little, re-rendering, and a debugger (delve or gdb) that dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.versions import V2_MODULE

from .conftest import PROJECT, _sandbox_processes, run_dir

CONFIG = f"{V2_MODULE}/core/images.Config"
LABELS_PATH = f"{V2_MODULE}/client.WithImageConfigLabels.func1"
ARGS_PATH = f"{V2_MODULE}/pkg/oci.WithImageConfigArgs.func1"
NEW_CONTAINER = f"{V2_MODULE}/client.(*Client).NewContainer"


results_dir = run_dir


def test_reproduce_names_core_images_config(shared_build, annotrace, no_leftovers):
    result = annotrace("reproduce", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    assert document["backend"] == "delve"
    assert document["probe"]["complete"] is True
    for sentinel in document["sentinels"]:
        assert sentinel["verdict"] == "dropped"
        drop = sentinel["drop"]
        assert drop["function"] == CONFIG
        assert drop["file"] == "core/images/image.go"
        assert drop["line"] == 267  # `return manifest.Config, nil` at v2.1.4
        assert drop["process"] == "ctr"
        assert f'manifest.Annotations["{sentinel["key"]}"]' in drop["evidence"]
        assert "absent from return values" in drop["evidence"]
        # Both of the seed's backtraces, under (*Client).NewContainer.
        paths = drop["call_paths"]
        assert any(LABELS_PATH in path and NEW_CONTAINER in path for path in paths)
        assert any(ARGS_PATH in path and NEW_CONTAINER in path for path in paths)
        assert sentinel["stages"]["spec"] is False and sentinel["stages"]["runtime"] is False

    saved = results_dir(document)
    for name in ("events.jsonl", "graph.json", "graph.graphml", "graph.dot", "graph.svg", "graph.png",
                 "report.md", "transcript.txt", "plan.json"):
        assert (saved / name).is_file(), name
    report = (saved / "report.md").read_text()
    assert "https://github.com/containerd/containerd/blob/v2.1.4/core/images/image.go#L267" in report
    assert "return manifest.Config, nil" in report
    assert "<details>" in report
    transcript = (saved / "transcript.txt").read_text()
    assert "print manifest" in transcript
    foo = next(s for s in document["sentinels"] if s["key"] == "com.test.foo")
    assert foo["value"] in transcript  # the debugger printed the annotation the function drops
    assert "core/images.(*Image).Config" in transcript  # and the backtrace

    # `annotrace report` recomputes the same verdict from the saved events alone.
    rerendered = annotrace("report", str(saved), "--json")
    assert rerendered.code == 0, rerendered.stderr
    assert {s["drop"]["function"] for s in rerendered.document["sentinels"]} == {CONFIG}


def test_runtime_flag_has_no_drop(shared_build, annotrace, no_leftovers):
    result = annotrace("run", "runtime-annotation", "--no-transcript", "--json")
    assert result.code == 0, result.stderr
    by_source = {s["source"]: s for s in result.document["sentinels"]}
    flag = by_source["runtime-flag"]
    assert flag["reached_runtime"] is True
    assert flag["verdict"] == "reached"
    assert flag["drop"] is None
    # It was followed through the daemon to the bundle, inside the spec's JSON bytes.
    assert f"{V2_MODULE}/core/runtime/v2.NewBundle" in flag["localization"]["last_carriers"]
    assert by_source["manifest"]["drop"]["function"] == CONFIG


def test_refinement_finds_the_drop_from_a_plan_that_watches_too_little(shared_build, annotrace, no_leftovers):
    # Only (*Image).Config, which never holds a manifest annotation: refinement starts where values
    # enter each process, follows the manifest's bytes up from content.ReadBlob and names Config.
    result = annotrace("reproduce", "--probe-only", "--probe", r"ctr:core/images\.\(\*Image\)\.Config$",
                       "--no-transcript", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    passes = document["probe"]["passes"]
    assert passes[0]["functions"]["ctr"] == [f"{V2_MODULE}/core/images.(*Image).Config"]
    assert 2 < len(passes) <= 8
    added = [f for r in document["probe"]["refinement"] for f in (r.get("added") or {}).get("ctr", [])]
    assert f"{V2_MODULE}/core/content.ReadBlob" in added and CONFIG in added
    assert added.index(f"{V2_MODULE}/core/content.ReadBlob") < added.index(CONFIG)
    assert {s["drop"]["function"] for s in document["sentinels"]} == {CONFIG}
    assert all(s["localization"]["passes"] == len(passes) for s in document["sentinels"])
    assert all(s["localization"]["stop"].startswith("pinned: core/images.Config") for s in document["sentinels"])


def test_unknown_probe_pattern_is_bad_input(shared_build, annotrace, no_leftovers):
    result = annotrace("reproduce", "--probe", r"ctr:core/images\.Confg$")
    assert result.code == 2
    [line] = [l for l in result.stderr.splitlines() if l.startswith("annotrace: error:")]
    assert "matches no function" in line and "did you mean" in line and "core/images.Config" in line


def _process(matches) -> int | None:
    """The pid of a process whose argv (as bytes) `matches`, if any."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if matches(cmdline):
                return int(entry.name)
    return None


def _delve_attached_to_daemon() -> int | None:
    return _process(lambda argv: len(argv) > 2 and argv[0].endswith(b"dlv") and argv[1] == b"attach")


def _gdb_attached_to_daemon() -> int | None:
    return _process(lambda argv: argv[0].endswith(b"gdb") and b"--interpreter=mi3" in argv
                    and argv[-2].endswith(b"/containerd"))


@pytest.mark.parametrize("backend,find", [("delve", _delve_attached_to_daemon), ("gdb", _gdb_attached_to_daemon)])
def test_a_debugger_that_dies_makes_the_verdict_incomplete(backend, find, shared_build, results_root, no_leftovers):
    env = {**os.environ, "ANNOTRACE_RESULTS": str(results_root)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "reproduce", "--backend", backend, "--no-transcript",
                             "--max-passes", "1", "--json"], cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        victim = find()
        time.sleep(0.05)
    assert victim is not None, f"{backend} never attached to the daemon"
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    document = json.loads(stdout)
    assert document["probe"]["complete"] is False
    assert document["probe"]["faults"]
    for sentinel in document["sentinels"]:
        assert sentinel["verdict"] == "incomplete"  # never "dropped" or "reached"
        assert sentinel["drop"] is None
    assert _sandbox_processes() == []
