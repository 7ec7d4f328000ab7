"""Unit tests for harness.stagemap: recompute the stage map from recorded real runs.

The fixtures under tests/fixtures/runs/ are verbatim subsets of real runs of
containerd v2.1.4 (see tests/fixtures/runs/README.md); their result.json holds the
stage map the run printed. Nothing here needs a daemon.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from harness.image.scenario import STAGES, Sentinel
from harness.stagemap import (
    STATE_FILES,
    SentinelStages,
    StageDocument,
    find_paths,
    load_documents,
    save_content,
    stage_map,
)

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
SEED = RUNS / "seed-ctr-run-v2.1.4"
ALL_SOURCES = RUNS / "all-sources-v2.1.4"
FIXTURES = [SEED, ALL_SOURCES]


# --------------------------------------------------------------------------- helpers


def load_sentinels(run_dir: Path) -> list[Sentinel]:
    raw = json.loads((run_dir / "sentinels.json").read_text())
    return [Sentinel(source=s["source"], key=s["key"], nominal=s["nominal"], value=s["value"]) for s in raw]


def recorded(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "result.json").read_text())["sentinels"]


def computed(run_dir: Path) -> list[dict]:
    return [entry.to_dict() for entry in stage_map(load_sentinels(run_dir), load_documents(run_dir))]


def by_source(entries: list[dict]) -> dict[str, dict]:
    """Entries keyed by source (the all-sources fixture has one sentinel per source)."""
    keyed = {entry["source"]: entry for entry in entries}
    assert len(keyed) == len(entries), "sources are not unique in this fixture"
    return keyed


def stages_where(entry: dict, value) -> set[str]:
    return {stage for stage, state in entry["stages"].items() if state is value}


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- recorded runs


@pytest.mark.parametrize("run_dir", FIXTURES, ids=lambda p: p.name)
def test_stage_map_reproduces_recorded_result(run_dir: Path) -> None:
    expected = recorded(run_dir)
    got = computed(run_dir)
    assert len(got) == len(expected) == len(load_sentinels(run_dir))
    for mine, theirs in zip(got, expected, strict=True):
        for field_name in ("source", "key", "value", "nominal"):
            assert mine[field_name] == theirs[field_name]
        assert mine["stages"] == theirs["stages"], mine["key"]
        assert mine["seen"] == theirs["seen"], mine["key"]
        assert mine["furthest_stage"] == theirs["furthest_stage"], mine["key"]
        assert mine["reached_runtime"] == theirs["reached_runtime"], mine["key"]


@pytest.mark.parametrize("run_dir", FIXTURES, ids=lambda p: p.name)
def test_every_stage_is_observed_in_a_full_run(run_dir: Path) -> None:
    documents = load_documents(run_dir)
    assert {d.stage for d in documents} == set(STAGES)
    for entry in computed(run_dir):
        assert list(entry["stages"]) == list(STAGES)
        assert None not in entry["stages"].values()
        # seen lists exactly the stages that are True
        assert set(entry["seen"]) == stages_where(entry, True)


def test_seed_run_annotations_stop_at_the_manifest() -> None:
    sentinels = load_sentinels(SEED)
    assert {s.source for s in sentinels} == {"manifest"}
    entries = computed(SEED)
    assert len(entries) == 4
    for entry in entries:
        assert entry["stages"] == {
            "index": False,
            "manifest": True,
            "config": False,
            "image-record": False,
            "container-labels": False,
            "spec": False,
            "bundle": False,
            "runtime": False,
        }
        assert entry["reached_runtime"] is False
        assert entry["furthest_stage"] == "manifest"
        assert list(entry["seen"]) == ["manifest"]
    foo = next(e for e in entries if e["key"] == "com.test.foo")
    assert len(foo["seen"]["manifest"]) == 1
    assert foo["seen"]["manifest"][0].endswith('annotations["com.test.foo"]')
    assert foo["seen"]["manifest"][0] == 'manifest (content-manifest.json): annotations["com.test.foo"]'


def test_all_sources_index_annotation_only_in_index() -> None:
    entry = by_source(computed(ALL_SOURCES))["index"]
    assert stages_where(entry, True) == {"index"}
    assert entry["seen"] == {"index": ['index (content-index.json): annotations["com.test.index"]']}
    assert entry["furthest_stage"] == "index"
    assert entry["reached_runtime"] is False


def test_all_sources_index_descriptor_only_in_index() -> None:
    entry = by_source(computed(ALL_SOURCES))["index-descriptor"]
    assert stages_where(entry, True) == {"index"}
    (path,) = entry["seen"]["index"]
    assert path.endswith('manifests[0].annotations["com.test.descriptor"]')
    assert entry["furthest_stage"] == "index"


def test_all_sources_manifest_annotation_only_in_manifest() -> None:
    entry = by_source(computed(ALL_SOURCES))["manifest"]
    assert stages_where(entry, True) == {"manifest"}
    assert entry["furthest_stage"] == "manifest"


def test_all_sources_config_label_reaches_labels_but_not_spec() -> None:
    entry = by_source(computed(ALL_SOURCES))["config-label"]
    assert stages_where(entry, True) == {"config", "container-labels"}
    assert entry["stages"]["spec"] is False
    assert entry["stages"]["bundle"] is False
    assert entry["stages"]["runtime"] is False
    assert entry["seen"]["config"] == ['config (content-config.json): config.Labels["com.urunc.unikernel.hypervisor"]']
    assert entry["seen"]["container-labels"] == ['container record labels: ["com.urunc.unikernel.hypervisor"]']
    assert entry["furthest_stage"] == "container-labels"
    assert entry["reached_runtime"] is False


def test_all_sources_urunc_json_only_at_runtime_via_base64() -> None:
    entry = by_source(computed(ALL_SOURCES))["urunc-json"]
    assert stages_where(entry, True) == {"runtime"}
    (path,) = entry["seen"]["runtime"]
    assert "base64(" in path
    assert path.startswith("runtime rootfs /urunc.json: ")
    assert path == 'runtime rootfs /urunc.json: base64(["com.urunc.unikernel.hypervisor"])'
    assert entry["reached_runtime"] is True
    assert entry["furthest_stage"] == "runtime"


def test_all_sources_runtime_flag_from_labels_to_runtime() -> None:
    entry = by_source(computed(ALL_SOURCES))["runtime-flag"]
    assert stages_where(entry, True) == {"container-labels", "spec", "bundle", "runtime"}
    assert stages_where(entry, False) == {"index", "manifest", "config", "image-record"}
    assert entry["seen"]["runtime"] == ['runtime create config.json: annotations["com.test.runtime"]']
    assert entry["seen"]["bundle"] == ['bundle config.json: annotations["com.test.runtime"]']
    assert entry["seen"]["spec"] == ['container record spec: annotations["com.test.runtime"]']
    assert entry["reached_runtime"] is True


def test_load_documents_labels_and_stages_in_flow_order() -> None:
    documents = load_documents(ALL_SOURCES)
    assert [(d.stage, d.label, d.decode_base64) for d in documents] == [
        ("index", "index (content-index.json)", False),
        ("manifest", "manifest (content-manifest.json)", False),
        ("config", "config (content-config.json)", False),
        ("image-record", "image-record (image-record.json)", False),
        ("container-labels", "container record labels", False),
        ("spec", "container record spec", False),
        ("bundle", "bundle config.json", False),
        ("runtime", "runtime create config.json", False),
        ("runtime", "runtime rootfs /urunc.json", True),
    ]
    urunc = documents[-1].data
    assert urunc == {"com.urunc.unikernel.hypervisor": b64("hvt-atr-urunc-json-9725c300")}


def test_seed_run_has_no_rootfs_urunc_document() -> None:
    runtime = [d for d in load_documents(SEED) if d.stage == "runtime"]
    assert [d.label for d in runtime] == ["runtime create config.json"]


# --------------------------------------------------------------------------- missing state


def test_missing_container_and_bundle_state_gives_none(tmp_path: Path) -> None:
    run_dir = copy_run(SEED, tmp_path)
    (run_dir / "state" / STATE_FILES["bundle"]).unlink()
    (run_dir / "state" / STATE_FILES["container"]).unlink()
    full = computed(SEED)
    partial = computed(run_dir)
    for before, after in zip(full, partial, strict=True):
        assert after["stages"]["bundle"] is None
        assert after["stages"]["spec"] is None
        assert after["stages"]["container-labels"] is None
        for stage in ("index", "manifest", "config", "image-record", "runtime"):
            assert after["stages"][stage] == before["stages"][stage], stage
        assert after["stages"]["runtime"] is False
        assert after["furthest_stage"] == "manifest"
        assert after["seen"] == before["seen"]


def test_missing_recordings_gives_runtime_none(tmp_path: Path) -> None:
    run_dir = copy_run(ALL_SOURCES, tmp_path)
    shutil.rmtree(run_dir / "recordings")
    entries = by_source(computed(run_dir))
    for entry in entries.values():
        assert entry["stages"]["runtime"] is None
        assert entry["reached_runtime"] is False
        assert "runtime" not in entry["seen"]
    # urunc.json was only ever seen at runtime: now nothing is True for it
    assert entries["urunc-json"]["furthest_stage"] is None
    assert stages_where(entries["urunc-json"], True) == set()
    # runtime-flag still reached the bundle
    assert entries["runtime-flag"]["furthest_stage"] == "bundle"
    # everything before runtime is unchanged
    full = by_source(computed(ALL_SOURCES))
    for source, entry in entries.items():
        for stage in STAGES[:-1]:
            assert entry["stages"][stage] == full[source]["stages"][stage]


def test_empty_results_dir_gives_all_none(tmp_path: Path) -> None:
    assert load_documents(tmp_path) == []
    (entry,) = stage_map([Sentinel("manifest", "k", "v", "v-1")], [])
    assert entry.stages == dict.fromkeys(STAGES)
    assert entry.seen == {}
    assert entry.furthest_stage is None
    assert entry.reached_runtime is False


def test_stage_map_only_searches_documents_of_its_stage() -> None:
    sentinel = Sentinel("manifest", "k", "v", "needle")
    documents = [
        StageDocument("index", "idx", {"a": "no"}),
        StageDocument("runtime", "rt1", {"a": "no"}),
        StageDocument("runtime", "rt2", {"b": ["x", "has needle"]}),
    ]
    (entry,) = stage_map([sentinel], documents)
    assert entry.stages["index"] is False
    assert entry.stages["runtime"] is True
    assert entry.stages["manifest"] is None
    assert entry.seen == {"runtime": ["rt2: b[1]"]}


def test_non_json_state_file_is_searched_as_text(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILES["manifest"]).write_bytes(b"not json but has needle inside")
    documents = load_documents(tmp_path)
    assert [(d.stage, d.data) for d in documents] == [("manifest", "not json but has needle inside")]
    (entry,) = stage_map([Sentinel("manifest", "k", "v", "needle")], documents)
    assert entry.seen == {"manifest": ["manifest (content-manifest.json): <value>"]}


# --------------------------------------------------------------------------- find_paths


def test_find_paths_nested_dicts_and_lists() -> None:
    data = {"a": {"b": [{"c": "x-needle"}, {"d": "other"}]}, "top": "needle"}
    assert find_paths(data, "needle") == ["a.b[0].c", "top"]


def test_find_paths_non_identifier_keys_are_bracketed_json_strings() -> None:
    data = {"annotations": {"com.test.foo": "needle", "plain": "needle"}, "with space": {"k": "needle"}}
    assert find_paths(data, "needle") == [
        'annotations["com.test.foo"]',
        "annotations.plain",
        '["with space"].k',
    ]


def test_find_paths_top_level_non_identifier_key() -> None:
    assert find_paths({"com.x": "needle"}, "needle") == ['["com.x"]']


def test_find_paths_key_with_quote_is_json_escaped() -> None:
    assert find_paths({'a"b': "needle"}, "needle") == ['["a\\"b"]']


def test_find_paths_list_indexes() -> None:
    assert find_paths(["a", ["b", "needle"]], "needle") == ["[1][1]"]
    assert find_paths({"l": [["needle"]]}, "needle") == ["l[0][0]"]


def test_find_paths_substring_inside_env_entry() -> None:
    spec = {"process": {"env": ["PATH=/usr/bin", "A=needle-123", "B=zzz"]}}
    assert find_paths(spec, "needle-123") == ["process.env[1]"]


def test_find_paths_whole_string_document() -> None:
    assert find_paths("some needle text", "needle") == ["<value>"]


def test_find_paths_no_match_returns_empty_list() -> None:
    assert find_paths({"a": {"b": ["x", "y"]}, "c": "z"}, "needle") == []
    assert find_paths({}, "needle") == []
    assert find_paths([], "needle") == []


def test_find_paths_ignores_non_string_scalars_and_keys() -> None:
    # keys are not values: a key containing the value is not a match
    data = {"needle": "x", "n": 123, "b": True, "z": None, "f": 1.5}
    assert find_paths(data, "needle") == []
    assert find_paths(data, "123") == []


def test_find_paths_base64_only_when_asked() -> None:
    data = {"com.urunc.unikernel.hypervisor": b64("hvt-needle"), "plain": b64("needle")}
    assert find_paths(data, "needle") == []
    assert find_paths(data, "needle", decode_base64=True) == [
        'base64(["com.urunc.unikernel.hypervisor"])',
        "base64(plain)",
    ]


def test_find_paths_plain_match_wins_over_base64() -> None:
    # a plain match is reported as such, not also as base64
    assert find_paths({"k": "needle"}, "needle", decode_base64=True) == ["k"]


def test_find_paths_invalid_base64_is_ignored() -> None:
    data = {"a": "not base64 at all!", "b": "abc", "c": "####", "d": ""}
    assert find_paths(data, "needle", decode_base64=True) == []


def test_find_paths_base64_of_non_utf8_is_ignored() -> None:
    data = {"a": base64.b64encode(b"\xff\xfe\xfd").decode()}
    assert find_paths(data, "needle", decode_base64=True) == []


def test_find_paths_base64_in_nested_list() -> None:
    data = {"x": [b64("zzz"), b64("A=needle")]}
    assert find_paths(data, "needle", decode_base64=True) == ["base64(x[1])"]


def test_find_paths_non_ascii_string_with_base64_decoding() -> None:
    assert find_paths({"a": "héllo"}, "needle", decode_base64=True) == []


# --------------------------------------------------------------------------- SentinelStages


def make_stages(**true_at) -> SentinelStages:
    stages: dict[str, bool | None] = {stage: False for stage in STAGES}
    for stage, state in true_at.items():
        stages[stage.replace("_", "-")] = state
    return SentinelStages(Sentinel("manifest", "k", "n", "v"), stages)


def test_furthest_stage_with_gaps() -> None:
    entry = make_stages(manifest=True, runtime=True)
    assert entry.furthest_stage == "runtime"
    assert entry.reached_runtime is True


def test_furthest_stage_ignores_none_and_false_after_last_true() -> None:
    entry = make_stages(index=True, config=True, image_record=None, bundle=None, runtime=None)
    assert entry.furthest_stage == "config"
    assert entry.reached_runtime is False


def test_furthest_stage_none_when_nothing_true() -> None:
    assert make_stages().furthest_stage is None
    all_none = SentinelStages(Sentinel("manifest", "k", "n", "v"), dict.fromkeys(STAGES))
    assert all_none.furthest_stage is None
    assert all_none.reached_runtime is False


def test_to_dict_shape() -> None:
    entry = make_stages(spec=True)
    entry.seen["spec"] = ["container record spec: annotations.k"]
    assert entry.to_dict() == {
        "source": "manifest",
        "key": "k",
        "value": "v",
        "nominal": "n",
        "stages": {**{stage: False for stage in STAGES}, "spec": True},
        "seen": {"spec": ["container record spec: annotations.k"]},
        "furthest_stage": "spec",
        "reached_runtime": False,
        "drop": None,
    }


# --------------------------------------------------------------------------- save_content


class FakeReader:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.asked: list[str] = []

    def content(self, digest: str) -> bytes:
        self.asked.append(digest)
        return self.blobs[digest]


def _index_store(platforms: list[tuple[str, str]]) -> tuple[dict, dict[str, bytes]]:
    manifests, blobs = [], {}
    for n, (os_name, arch) in enumerate(platforms):
        manifest = json.dumps({"config": {"digest": f"sha256:cfg{n}"}, "n": n}).encode()
        blobs[f"sha256:man{n}"] = manifest
        blobs[f"sha256:cfg{n}"] = json.dumps({"config": {"Labels": {"n": str(n)}}}).encode()
        manifests.append({"digest": f"sha256:man{n}", "platform": {"os": os_name, "architecture": arch}})
    blobs["sha256:idx"] = json.dumps({"manifests": manifests}).encode()
    record = {"name": "r/x:latest", "target": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:idx"}}
    return record, blobs


def test_save_content_picks_the_wanted_platform(tmp_path: Path) -> None:
    record, blobs = _index_store([("linux", "arm64"), ("linux", "amd64")])
    reader = FakeReader(blobs)
    save_content(reader, record, tmp_path / "state", platform="linux/amd64")
    state = tmp_path / "state"
    assert reader.asked == ["sha256:idx", "sha256:man1", "sha256:cfg1"]
    assert (state / STATE_FILES["index"]).read_bytes() == blobs["sha256:idx"]
    assert (state / STATE_FILES["manifest"]).read_bytes() == blobs["sha256:man1"]
    assert (state / STATE_FILES["config"]).read_bytes() == blobs["sha256:cfg1"]
    assert json.loads((state / STATE_FILES["image-record"]).read_text()) == record


def test_save_content_falls_back_to_first_manifest(tmp_path: Path) -> None:
    record, blobs = _index_store([("linux", "s390x"), ("linux", "arm64")])
    reader = FakeReader(blobs)
    save_content(reader, record, tmp_path, platform="linux/amd64")
    assert (tmp_path / STATE_FILES["manifest"]).read_bytes() == blobs["sha256:man0"]


def test_save_content_plain_manifest_target_has_no_index(tmp_path: Path) -> None:
    blobs = {
        "sha256:m": json.dumps({"config": {"digest": "sha256:c"}}).encode(),
        "sha256:c": b'{"config": {}}',
    }
    record = {"name": "r", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:m"}}
    save_content(FakeReader(blobs), record, tmp_path, platform="linux/amd64")
    assert not (tmp_path / STATE_FILES["index"]).exists()
    assert (tmp_path / STATE_FILES["manifest"]).read_bytes() == blobs["sha256:m"]
    assert (tmp_path / STATE_FILES["config"]).read_bytes() == blobs["sha256:c"]


def test_save_content_empty_index_stops_after_index(tmp_path: Path) -> None:
    blobs = {"sha256:idx": b'{"manifests": []}'}
    record = {"name": "r", "target": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:idx"}}
    save_content(FakeReader(blobs), record, tmp_path, platform="linux/amd64")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([STATE_FILES["image-record"], STATE_FILES["index"]])
