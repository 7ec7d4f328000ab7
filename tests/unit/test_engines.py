"""Unit tests for the engines table, on a recorded real run (tests/fixtures/engines/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.engines import ENGINES, EngineResult, run_time_sentinels, table

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "engines" / "seed-ctr-run-v2.1.4.json").read_text())


def _results() -> list[EngineResult]:
    results = []
    for e in RECORDED["engines"]:
        result = EngineResult(e["engine"], e["version"], e["sentinels"], e["error"], e["results_dir"])
        result.probed = e["probed"]
        results.append(result)
    return results


def test_recorded_run_covers_every_engine():
    assert [e["engine"] for e in RECORDED["engines"]] == list(ENGINES)
    assert all(e["error"] is None for e in RECORDED["engines"])


def test_table_rows_say_where_each_source_stops():
    rows = {line.split(" | ")[0].strip("| "): line for line in table(_results()).splitlines()[2:]}
    assert set(rows) == set(ENGINES)
    # Manifest annotations: only podman 4.3 hands them to the runtime.
    assert rows["podman"].count("| yes") == 6
    assert "no (last: manifest)" in rows["ctr"] and "no (last: manifest)" in rows["nerdctl"]
    # The handler's globs pass the urunc-prefixed CRI annotations and nothing else.
    assert rows["cri-urunc"].count("| yes") == 2 and rows["cri"].count("| yes") == 0
    # Drop points localized by delve on the CRI path and in nerdctl; the others are not probed here.
    assert rows["cri"].endswith("| images.Config:267 |") and rows["nerdctl"].endswith("| images.Config:267 |")
    assert rows["docker"].endswith("| not probed |")


def test_an_engine_that_failed_is_a_row_with_its_error():
    failed = EngineResult("podman", "podman version 4.3.1", [], "podman did not reach its OCI runtime: boom")
    row = table([_results()[0], failed]).splitlines()[-1]
    assert row.startswith("| podman | podman version 4.3.1 | error: podman did not reach its OCI runtime: boom")


def test_run_time_sources_per_engine():
    assert {s.source for s in run_time_sentinels("cri", "n")} == {"cri-pod", "cri-container"}
    assert {s.source for s in run_time_sentinels("nerdctl", "n")} == {"runtime-flag"}
    assert run_time_sentinels("docker", "n") == []
    keys = {s.key for s in run_time_sentinels("ctr", "n")}
    assert keys == {"com.urunc.unikernel.block", "com.test.runtime"}  # one inside urunc's prefix, one outside
