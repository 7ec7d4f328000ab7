"""`annotrace check` against the committed baseline of the default version, for real.

The same baseline passes on the plain build and fails, with a readable diff and a
JUnit failure per sentinel, when a test patch hands the manifest's annotations on
from core/images.Config (the drop moves to a caller). The patched build is an extra
build (about a minute and a half on two cores, cached after).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.versions import DEFAULT_VERSION

from .conftest import PROJECT

BASELINES = PROJECT / "results" / "baselines"
MOVE_DROP = PROJECT / "tests" / "fixtures" / "patches" / "move-drop-images-config.patch"


def _junit(path) -> ET.Element:
    return ET.parse(path).getroot()


def test_check_passes_against_the_committed_baseline(shared_build, annotrace, tmp_path, no_leftovers):
    assert (BASELINES / "seed-ctr-run" / f"{DEFAULT_VERSION}.json").is_file()
    junit = tmp_path / "junit.xml"
    result = annotrace("check", "--baseline", str(BASELINES), "--containerd", DEFAULT_VERSION,
                       "--scenario", "seed-ctr-run", "--junit", str(junit), "--json")
    assert result.code == 0, result.stderr
    document = result.document
    assert document["passed"] is True
    [check] = document["checks"]
    assert check["version"] == DEFAULT_VERSION and check["patches"] == []
    assert [c for c in check["changes"] if c["failing"]] == []
    assert {s["drop_function"] for s in check["verdict"]["sentinels"]} == {"core/images.Config"}
    root = _junit(junit)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "0", "0")
    assert "verdicts match" in result.stderr


def test_check_fails_when_a_patch_moves_the_drop(shared_build, annotrace, tmp_path, no_leftovers):
    junit = tmp_path / "junit.xml"
    result = annotrace("check", "--baseline", str(BASELINES), "--containerd", DEFAULT_VERSION,
                       "--scenario", "seed-ctr-run", "--patch", str(MOVE_DROP), "--junit", str(junit), "--json")
    assert result.code == 1, result.stderr
    document = result.document
    assert document["passed"] is False
    [check] = document["checks"]
    assert check["patches"] == [MOVE_DROP.name]
    # The descriptor now carries the annotations past core/images.Config, so that is no longer
    # the drop. Where they go next (content.ReadBlob reads the config blob with it) delve cannot
    # always prove, so the new verdict may be another function (drop-moved) or none yet
    # (drop-disappeared, status unresolved): either way the verdict changed and check says so.
    moved = [c for c in check["changes"] if c["kind"] in ("drop-moved", "drop-disappeared")]
    assert len(moved) == 4, check["changes"]
    for change in moved:
        assert change["failing"] and change["before"].startswith("core/images.Config (core/images/image.go:267)")
        assert not change["after"].startswith("core/images.Config")
    # the diff is readable on stderr, and CI systems get one failure per sentinel
    assert "! manifest:com.urunc.unikernel.binary: drop-" in result.stderr
    assert "with patches move-drop-images-config.patch" in result.stderr
    root = _junit(junit)
    assert (root.get("tests"), root.get("failures")) == ("4", "4")
