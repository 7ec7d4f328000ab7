"""Regression checks: canonical names, verdicts, comparison, JUnit, baselines and bisection.

Verdicts come from a real matrix run (tests/fixtures/verdicts/seed-matrix.json);
changed verdicts are derived from them with dataclasses.replace.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import HarnessError, Unsupported
from harness.regress.baseline import load_baselines, write_baseline
from harness.regress.bisect import bisect, semver_key, tags_between
from harness.regress.compare import compare_runs, differs, render_diff
from harness.regress.junit import junit_xml
from harness.regress.matrix import matrix_markdown, parse_versions, rows, timing
from harness.regress.runner import Evaluation
from harness.regress.verdict import RunVerdict, failed_verdict, run_verdict
from harness.versions import V1_MODULE, V2_MODULE, canonical_file, canonical_function

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "verdicts" / "seed-matrix.json"


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict]:
    return {run["requested"]: run for run in json.loads(FIXTURE.read_text())["runs"]}


@pytest.fixture
def v2(recorded) -> RunVerdict:
    return run_verdict(recorded["v2.1.4"])


@pytest.fixture
def v1(recorded) -> RunVerdict:
    return run_verdict(recorded["v1.7.35"])


def _with_drop(verdict: RunVerdict, function: str | None, line: int | None = None) -> RunVerdict:
    sentinels = tuple(replace(s, drop_function=function, drop_line=line if line is not None else s.drop_line,
                              status="dropped" if function else "reached")
                      for s in verdict.sentinels)
    return replace(verdict, sentinels=sentinels)


# -- one version table for both layouts ------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    (f"{V1_MODULE}/images.Config", "core/images.Config"),
    (f"{V1_MODULE}.(*Client).NewContainer", "client.(*Client).NewContainer"),
    (f"{V1_MODULE}.WithImageConfigLabels.func1", "client.WithImageConfigLabels.func1"),
    (f"{V1_MODULE}/oci.WithImageConfigArgs.func1", "pkg/oci.WithImageConfigArgs.func1"),
    (f"{V1_MODULE}/runtime/v2.(*TaskManager).Create", "core/runtime/v2.(*TaskManager).Create"),
    (f"{V1_MODULE}/services/tasks.(*local).Create", "plugins/services/tasks.(*local).Create"),
    (f"{V1_MODULE}/cmd/ctr/commands/run.NewContainer", "cmd/ctr/commands/run.NewContainer"),
    (f"{V2_MODULE}/core/images.Config", "core/images.Config"),
    (f"{V2_MODULE}/client.(*Client).NewContainer", "client.(*Client).NewContainer"),
    ("runtime.goexit", "runtime.goexit"),
])
def test_canonical_function_maps_v1_names_to_v2_layout(name, expected):
    assert canonical_function(name) == expected


def test_canonical_file_moves_v1_directories_only():
    assert canonical_file("images/image.go", V1_MODULE) == "core/images/image.go"
    assert canonical_file("container_opts.go", V1_MODULE) == "client/container_opts.go"
    assert canonical_file("core/images/image.go", V2_MODULE) == "core/images/image.go"
    assert canonical_file(None, V1_MODULE) is None


# -- verdicts ----------------------------------------------------------------------------------------

def test_run_verdict_reads_the_recorded_seed_drop(v2, v1):
    assert v2.version == "v2.1.4" and v2.backend == "delve" and v2.outcome == "ok"
    assert {s.ident for s in v2.sentinels} == {
        "manifest:com.test.foo", "manifest:com.urunc.unikernel.binary",
        "manifest:com.urunc.unikernel.hypervisor", "manifest:com.urunc.unikernel.unikernelType"}
    for sentinel in v2.sentinels:
        assert sentinel.drop_function == "core/images.Config"
        assert (sentinel.drop_file, sentinel.drop_line) == ("core/images/image.go", 267)
        assert sentinel.furthest_stage == "manifest" and not sentinel.reached_runtime
    # v1 names the same function under its own module and file
    assert {s.drop_function for s in v1.sentinels} == {"core/images.Config"}
    assert {s.drop_file for s in v1.sentinels} == {"images/image.go"}


def test_verdict_round_trips_through_its_dict(v2):
    assert RunVerdict.from_dict(json.loads(json.dumps(v2.to_dict()))) == v2


def test_failed_verdict_tells_unsupported_from_error():
    unsupported = failed_verdict("s", "v1.6.36", V1_MODULE, "delve", Unsupported("ctr v1.6.36 has no\n `--x` flag"))
    assert unsupported.outcome == "unsupported" and unsupported.reason == "ctr v1.6.36 has no `--x` flag"
    assert failed_verdict("s", "main", "", "delve", HarnessError("boom")).outcome == "error"


# -- comparison ---------------------------------------------------------------------------------------

def test_same_verdict_has_no_changes(v2):
    assert compare_runs(v2, v2) == []
    assert "verdicts match" in render_diff(v2, v2, [])


def test_v1_and_v2_layouts_agree_on_the_seed_verdict(v1, v2):
    changes = compare_runs(v1, v2)
    assert not differs(v1, v2)
    # only the line moved (image.go:264 in v1.7.35, :267 in v2.1.4), reported as notes
    assert changes and {c.kind for c in changes} == {"line-moved"} and not any(c.failing for c in changes)
    assert all(c.failing for c in compare_runs(v1, v2, strict_lines=True))


def test_drop_moved_is_a_failing_change(v2):
    moved = _with_drop(v2, "client.WithImageConfigLabels.func1", 130)
    changes = compare_runs(v2, moved)
    kinds = {c.kind for c in changes}
    assert "drop-moved" in kinds and differs(v2, moved)
    text = render_diff(v2, moved, changes)
    assert "! manifest:com.test.foo: drop-moved: core/images.Config (core/images/image.go:267) -> " \
           "client.WithImageConfigLabels.func1 (core/images/image.go:130)" in text


def test_drop_disappears_when_the_sentinel_reaches_the_runtime(v2):
    stages = {**v2.sentinels[0].stages, "spec": True, "bundle": True, "runtime": True}
    fixed = replace(v2, sentinels=tuple(replace(s, stages=stages, furthest_stage="runtime", reached_runtime=True,
                                                drop_function=None, drop_file=None, drop_line=None, status="reached")
                                        for s in v2.sentinels))
    kinds = [c.kind for c in compare_runs(v2, fixed) if c.sentinel == "manifest:com.test.foo"]
    assert kinds == ["stage-changed", "status-changed", "drop-disappeared"]
    assert [c.kind for c in compare_runs(fixed, v2) if c.sentinel == "manifest:com.test.foo"][-1] == "drop-appeared"


def test_outcome_and_sentinel_set_changes(v2):
    broken = failed_verdict(v2.scenario, v2.version, v2.module, v2.backend, HarnessError("daemon did not start"))
    [change] = compare_runs(v2, broken)
    assert change.kind == "outcome-changed" and "daemon did not start" in change.after
    fewer = replace(v2, sentinels=v2.sentinels[1:])
    assert [c.kind for c in compare_runs(v2, fewer)] == ["sentinel-missing"]
    assert [c.kind for c in compare_runs(fewer, v2)] == ["sentinel-added"]


def test_unsupported_runs_compare_by_reason():
    a = failed_verdict("s", "v1.6.36", V1_MODULE, "delve", Unsupported("no --annotation"))
    assert compare_runs(a, a) == []
    assert differs(a, failed_verdict("s", "v1.6.36", V1_MODULE, "delve", Unsupported("no --label")))


# -- JUnit ----------------------------------------------------------------------------------------------

def test_junit_counts_failures_and_errors(v2):
    moved = _with_drop(v2, "client.WithImageConfigLabels.func1")
    broken = failed_verdict(v2.scenario, v2.version, v2.module, v2.backend, HarnessError("build failed"))
    checks = [
        {"baseline": v2, "current": v2, "changes": compare_runs(v2, v2), "seconds": 1.0},
        {"baseline": v2, "current": moved, "changes": compare_runs(v2, moved), "seconds": 2.0},
        {"baseline": v2, "current": broken, "changes": compare_runs(v2, broken), "seconds": 3.0},
    ]
    root = ET.fromstring(junit_xml(checks, 6.0))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("12", "4", "4")
    suites = root.findall("testsuite")
    assert [s.get("failures") for s in suites] == ["0", "4", "0"]
    failure = suites[1].find("testcase/failure")
    assert "drop-moved" in failure.get("message") and "+++ this run" in failure.text
    assert "build failed" in suites[2].find("testcase/error").get("message")


# -- baselines --------------------------------------------------------------------------------------------

def test_baselines_round_trip_and_filter(tmp_path, v1, v2):
    path = write_baseline(tmp_path, v2, "annotrace matrix --containerd v2.1.4 --write-baselines X", {"go": "go1.26.8"})
    assert path == tmp_path / "seed-ctr-run" / "v2.1.4.json"
    write_baseline(tmp_path, v1, "cmd")
    loaded = load_baselines(tmp_path)
    assert [b.verdict.version for b in loaded] == ["v1.7.35", "v2.1.4"]
    assert loaded[1].verdict == v2 and loaded[1].command.startswith("annotrace matrix")
    assert [b.verdict.version for b in load_baselines(tmp_path, versions=("v2.1.4",))] == ["v2.1.4"]
    with pytest.raises(HarnessError, match="no baseline .* matches"):
        load_baselines(tmp_path, scenarios=("nope",))


def test_bad_baselines_are_clear_errors(tmp_path, v2):
    with pytest.raises(HarnessError, match="does not exist"):
        load_baselines(tmp_path / "missing")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "v1.json").write_text('{"schema": "other"}')
    with pytest.raises(HarnessError, match="cannot be read"):
        load_baselines(tmp_path)
    with pytest.raises(HarnessError, match="unpatched"):
        write_baseline(tmp_path, replace(v2, patches=("fix.patch",)), "cmd")


# -- bisection --------------------------------------------------------------------------------------------

TAGS = ["v2.0.0", "v2.0.1", "v2.0.2", "v2.0.3", "v2.0.4", "v2.0.5", "v2.0.6", "v2.0.7", "v2.0.8", "v2.0.9"]


def _oracle(v2, first_changed: str, errors: tuple[str, ...] = ()):
    moved = _with_drop(v2, "client.WithImageConfigLabels.func1")
    calls = []

    def verdict_of(tag: str) -> RunVerdict:
        calls.append(tag)
        if tag in errors:
            return failed_verdict(v2.scenario, tag, v2.module, v2.backend, HarnessError("build failed"))
        return replace(moved if semver_key(tag) >= semver_key(first_changed) else v2, version=tag)

    return verdict_of, calls


@pytest.mark.parametrize("first", TAGS[1:])
def test_bisect_finds_the_first_differing_tag(v2, first):
    verdict_of, calls = _oracle(v2, first)
    result = bisect(TAGS, verdict_of)
    assert result.first_bad == first
    assert result.last_good == TAGS[TAGS.index(first) - 1]
    assert len(calls) == len(set(calls)) <= 2 + 4  # good, bad, then about log2(8) more


def test_bisect_skips_tags_that_do_not_run(v2):
    verdict_of, _ = _oracle(v2, "v2.0.5", errors=("v2.0.4", "v2.0.5"))
    result = bisect(TAGS, verdict_of)
    assert result.first_bad == "v2.0.6" and result.last_good == "v2.0.3"
    assert set(result.skipped) == {"v2.0.4", "v2.0.5"}


def test_bisect_with_agreeing_ends_finds_nothing(v2):
    verdict_of, calls = _oracle(v2, "v9.0.0")
    result = bisect(TAGS, verdict_of)
    assert result.first_bad is None and calls == ["v2.0.0", "v2.0.9"]


def test_bisect_needs_a_good_tag_that_runs(v2):
    verdict_of, _ = _oracle(v2, "v2.0.5", errors=("v2.0.0",))
    with pytest.raises(HarnessError, match="--good v2.0.0 did not run"):
        bisect(TAGS, verdict_of)


def test_tags_between_orders_and_filters():
    tags = ["v1.7.1", "v2.0.0-rc.1", "v2.0.0", "v2.0.10", "v2.0.2", "v2.1.0-rc.0", "v2.1.0", "v2.0.0-beta.0", "bogus"]
    assert tags_between("v1.7.1", "v2.1.0", tags) == ["v1.7.1", "v2.0.0", "v2.0.2", "v2.0.10", "v2.1.0"]
    assert tags_between("v1.7.1", "v2.0.0", tags, prereleases=True) == [
        "v1.7.1", "v2.0.0-beta.0", "v2.0.0-rc.1", "v2.0.0"]
    with pytest.raises(HarnessError, match="not older"):
        tags_between("v2.1.0", "v2.0.0", tags)
    with pytest.raises(HarnessError, match="not a release tag"):
        tags_between("main", "v2.0.0", tags)


# -- matrix rendering -------------------------------------------------------------------------------------

def test_matrix_rows_keep_failed_versions(v2):
    unsupported = failed_verdict("runtime-annotation", "v1.6.36", V1_MODULE, "delve", Unsupported("no flag"))
    evaluations = [
        Evaluation("v2.1", v2, 1.0, 10.0, True, {"results_dir": "results/runs/x"}),
        Evaluation("v1.6", unsupported, 60.0, 3.0, False),
        Evaluation("main", failed_verdict("seed-ctr-run", "main", "", "delve", HarnessError("refused")), 0.5),
    ]
    table = rows(evaluations)
    assert len(table) == 4 + 1 + 1
    assert table[0]["furthest_stage"] == "manifest" and table[0]["drop"].startswith("core/images.Config")
    assert table[4]["furthest_stage"] == "unsupported" and table[4]["drop"] == "no flag"
    t = timing(evaluations, 80.0)
    assert (t["builds_done"], t["builds_reused"], t["cache"]) == (1, 1, "cold")
    assert evaluations[0].results_dir == "results/runs/x" and evaluations[1].results_dir is None
    markdown = matrix_markdown(evaluations, {"command": "annotrace matrix", "backend": "delve", "timing": t})
    assert "| seed-ctr-run | v2.1.4 (v2.1) | manifest:com.test.foo | manifest | core/images.Config" in markdown
    assert "| runtime-annotation | v1.6.36 (v1.6) |  | unsupported | no flag |" in markdown


def test_parse_versions():
    assert parse_versions(" v1.7, v2.1 ,v1.7,,main") == ("v1.7", "v2.1", "main")
    with pytest.raises(HarnessError):
        parse_versions(" , ")


def test_bisect_with_strict_lines_finds_where_the_drop_line_moved(v1):
    # As in containerd v1.7.20..v1.7.35: images.Config moved down one line at v1.7.23.
    tags = [f"v1.7.{n}" for n in range(20, 36)]

    def verdict_of(tag: str) -> RunVerdict:
        line = 264 if semver_key(tag) >= semver_key("v1.7.23") else 263
        return replace(v1, version=tag, sentinels=tuple(replace(s, drop_line=line) for s in v1.sentinels))

    assert bisect(tags, verdict_of).first_bad is None  # same function: no difference by default
    result = bisect(tags, verdict_of, strict_lines=True)
    assert (result.last_good, result.first_bad) == ("v1.7.22", "v1.7.23")
