"""`annotrace engines` on a real daemon: ctr, the CRI plugin (crictl), nerdctl, podman and docker.

One run of every engine on the seed image (the shared containerd build; crictl and
nerdctl built from the module proxy and cached). What each engine hands the OCI
runtime is read from the recorder's config.json.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import _sandbox_processes

MANIFEST_KEYS = ("com.test.foo", "com.urunc.unikernel.binary", "com.urunc.unikernel.hypervisor",
                 "com.urunc.unikernel.unikernelType")


@pytest.fixture(scope="module")
def engines(shared_build, annotrace):
    result = annotrace("engines", "--json", timeout=1800)
    assert result.code == 0, result.stderr[-3000:]
    # Every engine cleaned up after itself: no process, mount or podman storage left.
    assert _sandbox_processes() == []
    assert [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if "/var/tmp/annotrace-" in line] == []
    assert list(Path("/var/tmp").glob("annotrace-podman-*")) == []
    assert list(Path("/var/tmp").glob("annotrace-docker-*")) == []
    return {e["engine"]: e for e in result.document["engines"]}


def reached(engine: dict, source: str, key: str) -> bool | None:
    [sentinel] = [s for s in engine["sentinels"] if s["source"] == source and s["key"] == key]
    return sentinel["reached_runtime"]


def test_ctr_drops_manifest_annotations_and_passes_its_flag(engines):
    ctr = engines["ctr"]
    assert ctr["error"] is None
    assert not any(reached(ctr, "manifest", key) for key in MANIFEST_KEYS)
    assert reached(ctr, "runtime-flag", "com.urunc.unikernel.block") and reached(ctr, "runtime-flag", "com.test.runtime")


def test_cri_passes_nothing_by_default(engines):
    cri = engines["cri"]
    assert cri["error"] is None, cri["error"]
    assert not any(reached(cri, "manifest", key) for key in MANIFEST_KEYS)
    for source in ("cri-pod", "cri-container"):
        assert reached(cri, source, "com.urunc.unikernel.block") is False
        assert reached(cri, source, "com.test.runtime") is False
    # The image got into the daemon like with ctr: the manifest stage holds the sentinels.
    assert all(s["stages"]["manifest"] for s in cri["sentinels"] if s["source"] == "manifest")


def test_delve_localizes_the_drop_on_the_cri_path(engines):
    cri = engines["cri"]
    assert cri["probed"], "delve watched nothing on the CRI path"
    for sentinel in (s for s in cri["sentinels"] if s["source"] == "manifest"):
        assert sentinel["verdict"] == "dropped", sentinel["key"]
        drop = sentinel["drop"]
        # In the daemon: the CRI image store reads the image config, and images.Config keeps
        # the manifest (and its annotations) to itself.
        assert drop["function"].endswith("/core/images.Config") and drop["process"] == "containerd"
        assert f'manifest.Annotations["{sentinel["key"]}"]' in drop["evidence"]
        assert any("/internal/cri/" in f for path in drop["call_paths"] for f in path)


def test_cri_runtime_handler_globs_pass_urunc_keys_only(engines):
    cri = engines["cri-urunc"]
    assert cri["error"] is None, cri["error"]
    for source in ("cri-pod", "cri-container"):
        assert reached(cri, source, "com.urunc.unikernel.block") is True
        assert reached(cri, source, "com.test.runtime") is False
    # The globs are about CRI annotations: the image's urunc annotations still do not arrive.
    assert not any(reached(cri, "manifest", key) for key in MANIFEST_KEYS)


def test_nerdctl_passes_its_annotation_flag_but_not_the_manifest(engines):
    nerdctl = engines["nerdctl"]
    assert nerdctl["error"] is None, nerdctl["error"]
    assert nerdctl["version"].startswith("nerdctl v2.")
    assert not any(reached(nerdctl, "manifest", key) for key in MANIFEST_KEYS)
    assert reached(nerdctl, "runtime-flag", "com.urunc.unikernel.block") is True
    # Under delve, in nerdctl's own copy of the containerd client: the same drop as ctr's.
    assert nerdctl["probed"]
    for sentinel in (s for s in nerdctl["sentinels"] if s["source"] == "manifest"):
        assert sentinel["verdict"] == "dropped"
        assert sentinel["drop"]["function"].endswith("/core/images.Config")
        assert sentinel["drop"]["process"] == "nerdctl"


def test_podman_hands_manifest_annotations_to_the_runtime(engines):
    podman = engines["podman"]
    if podman["error"] and "did not reach its OCI runtime" in podman["error"]:
        pytest.skip(f"podman cannot start a container in this environment: {podman['error']}")
    assert podman["error"] is None
    assert podman["version"] == "podman version 4.3.1"
    # podman 4.3 copies the image's annotations into the spec; the recorder saw them even
    # though the real runc may fail afterwards here.
    assert all(reached(podman, "manifest", key) for key in MANIFEST_KEYS)
    assert reached(podman, "runtime-flag", "com.test.runtime") is True
    # No daemon: only the runtime stage is observed.
    assert all(s["stages"]["spec"] is None for s in podman["sentinels"])


def test_docker_engine_runs_here_and_drops_manifest_annotations(engines):
    docker = engines["docker"]
    assert docker["error"] is None, docker["error"]
    assert docker["version"].startswith("Docker version 20.10")
    # dockerd (with the containerd it manages) reached the recorder; the image's annotations did not.
    assert all(s["stages"]["runtime"] is False for s in docker["sentinels"])
    assert {s["source"] for s in docker["sentinels"]} == {"manifest"}  # docker 20.10 has no --annotation


def test_unknown_engine_is_bad_input(annotrace):
    result = annotrace("engines", "--engines", "ctr,lxc")
    assert result.code == 2
    assert result.error_lines and "unknown engine(s) lxc" in result.error_lines[0]
