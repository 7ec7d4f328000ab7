"""The stage maps of the default scenarios on a real containerd (DEFAULT_VERSION built from source)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.image.scenario import STAGES
from harness.versions import DEFAULT_VERSION, V2_MODULE

from .conftest import PROJECT

LATE_STAGES = ("spec", "bundle", "runtime")


def by_source(document: dict, source: str) -> list[dict]:
    found = [s for s in document["sentinels"] if s["source"] == source]
    assert found, f"no {source} sentinel in the document"
    return found


def results_dir(document: dict) -> Path:
    path = Path(document["results_dir"])
    return path if path.is_absolute() else PROJECT / path


def test_reproduce_shows_the_manifest_annotation_dying_before_spec(shared_build, annotrace, no_leftovers):
    # The stage map alone (no debugger): what the daemon's state says.
    result = annotrace("reproduce", "--backend", "state", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    assert document["scenario"] == "seed-ctr-run"
    assert document["containerd"]["version"] == DEFAULT_VERSION
    assert document["containerd"]["module"] == V2_MODULE
    assert document["containerd"]["patches"] == []
    assert document["action"]["exit_code"] == 0

    manifest = by_source(document, "manifest")
    assert {s["key"] for s in manifest} == {
        "com.test.foo",
        "com.urunc.unikernel.unikernelType",
        "com.urunc.unikernel.hypervisor",
        "com.urunc.unikernel.binary",
    }
    for sentinel in manifest:
        assert set(sentinel["stages"]) == set(STAGES)
        assert sentinel["stages"]["manifest"] is True
        # Observed and absent (False), not unobserved (None): the container record,
        # the bundle and the runtime's copy were all read.
        for stage in ("index", "config", "image-record", "container-labels", *LATE_STAGES):
            assert sentinel["stages"][stage] is False, (sentinel["key"], stage)
        assert sentinel["reached_runtime"] is False
        assert sentinel["furthest_stage"] == "manifest"
        assert sentinel["drop"] is None
    foo = next(s for s in manifest if s["key"] == "com.test.foo")
    assert foo["value"].startswith("bar-atr-") and foo["value"].endswith("-manifest")
    assert any(path.endswith('annotations["com.test.foo"]') for path in foo["seen"]["manifest"])

    saved = results_dir(document)
    assert json.loads((saved / "result.json").read_text()) == document
    recorded = [p for p in (saved / "recordings").iterdir() if p.name.endswith("-create")]
    assert len(recorded) == 1
    runtime_spec = json.loads((recorded[0] / "config.json").read_text())
    assert foo["value"] not in json.dumps(runtime_spec)
    assert (saved / "daemon.log").stat().st_size > 0
    assert "pull --plain-http 127.0.0.1:" in (saved / "commands.log").read_text()


def test_second_build_call_rebuilds_nothing(shared_build, annotrace):
    result = annotrace("build", "--containerd", DEFAULT_VERSION, "--json")
    assert result.code == 0, result.stderr
    manifest = result.document
    assert manifest["reused"] is True
    assert manifest["build_dir"] == str(shared_build.directory)
    assert manifest["binaries"] == shared_build.manifest["binaries"]
    assert manifest["flags"]["gcflags"] == "all=-N -l"
    assert "go build" not in result.stderr


def test_runtime_annotation_reaches_the_runtime(shared_build, annotrace, no_leftovers):
    result = annotrace("run", "runtime-annotation", "--backend", "state", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    [flag] = by_source(document, "runtime-flag")
    [image_value] = by_source(document, "manifest")
    assert flag["key"] == image_value["key"] == "com.urunc.unikernel.hypervisor"
    for stage in LATE_STAGES:
        assert flag["stages"][stage] is True, stage
        assert image_value["stages"][stage] is False, stage
    assert flag["reached_runtime"] is True and flag["drop"] is None
    assert flag["stages"]["manifest"] is False
    assert image_value["stages"]["manifest"] is True
    assert any('annotations["com.urunc.unikernel.hypervisor"]' in p for p in flag["seen"]["runtime"])

    recorded = next(p for p in (results_dir(document) / "recordings").iterdir() if p.name.endswith("-create"))
    annotations = json.loads((recorded / "config.json").read_text())["annotations"]
    assert annotations["com.urunc.unikernel.hypervisor"] == flag["value"]


def test_urunc_json_reaches_the_runtime_through_the_rootfs(shared_build, annotrace, no_leftovers):
    result = annotrace("run", "urunc-json", "--backend", "state", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    for sentinel in by_source(document, "urunc-json"):
        assert sentinel["stages"]["runtime"] is True
        assert sentinel["reached_runtime"] is True
        for stage in ("index", "manifest", "config", "image-record", "container-labels", "spec", "bundle"):
            assert sentinel["stages"][stage] is False, stage
        assert any("urunc.json" in p and "base64(" in p for p in sentinel["seen"]["runtime"])
    for sentinel in by_source(document, "manifest"):
        assert sentinel["stages"]["manifest"] is True
        assert sentinel["reached_runtime"] is False


def test_every_source_with_import_and_create_start(shared_build, annotrace, no_leftovers):
    result = annotrace("run", "all-sources", "--backend", "state", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    assert document["action"]["delivery"] == "import"

    def stages_seen(source: str) -> list[str]:
        [sentinel] = by_source(document, source)
        return [stage for stage in STAGES if sentinel["stages"][stage]]

    assert stages_seen("index") == ["index"]
    assert stages_seen("index-descriptor") == ["index"]
    assert stages_seen("manifest") == ["manifest"]
    # Image config labels become container labels, never spec annotations.
    assert stages_seen("config-label") == ["config", "container-labels"]
    assert stages_seen("urunc-json") == ["runtime"]
    # `ctr ... --label` values are written as labels and as spec annotations.
    assert stages_seen("runtime-flag") == ["container-labels", "spec", "bundle", "runtime"]
