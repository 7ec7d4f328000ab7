"""Localization on recorded real runs of planted drops (tests/fixtures/planted/, see its README).

Each fixture is the last pass of a real `annotrace run` on containerd v2.1.4 with one planted
patch (tests/fixtures/patches/planted/). The stage map and the verdict are recomputed from the
fixture alone, with the same functions `annotrace report` uses; the verdict must name the
function, file and process the patch header names (the header is read here, never by annotrace),
and must be the verdict the run itself printed. One fixture is also re-rendered whole.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.image.scenario import Sentinel
from harness.investigate import localize_all, rerender
from harness.probes.events import Event
from harness.stagemap import load_documents, stage_map
from harness.versions import layout_for_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RUNS = sorted(p for p in (FIXTURES / "planted").iterdir() if p.is_dir())


def planted(case: str) -> dict[str, str]:
    text = (FIXTURES / "patches" / "planted" / f"{case}.patch").read_text()
    return dict(re.findall(r"^planted-(\w+): (.*)$", text, re.M))


def _case(run: Path) -> tuple[str, str]:
    case, plan = run.name.rsplit("-", 1)
    return case, plan


def test_every_planted_case_is_recorded_from_both_plans():
    cases = {p.stem for p in (FIXTURES / "patches" / "planted").glob("*.patch")}
    assert {_case(run) for run in RUNS} == {(c, plan) for c in cases for plan in ("default", "empty")}


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_the_recorded_run_names_the_planted_drop(run):
    case, plan = _case(run)
    want = planted(case)
    document = json.loads(gzip.decompress((run / "result.json.gz").read_bytes()))
    sentinels = [Sentinel(s["source"], s["key"], s["nominal"], s["value"])
                 for s in json.loads((run / "sentinels.json").read_text())]
    with gzip.open(run / "events.jsonl.gz", "rt") as packed:
        events = [Event.from_json(json.loads(line)) for line in packed if line.strip()]
    rows = {m.sentinel.value: dict(m.stages) for m in stage_map(sentinels, load_documents(run))}
    layout = layout_for_module(document["containerd"]["module"])
    localizations = localize_all(sentinels, events, rows, layout, [])
    source, key = want["sentinel"].split("/", 1)
    sentinel = next(s for s in sentinels if s.source == source and s.key == key)
    loc = localizations[sentinel.value]
    assert loc.status == "dropped", (loc.waiting, loc.unknown)
    assert (loc.drop.function, loc.drop.file, loc.drop.process) == (want["function"], want["file"], want["process"])
    # What the run printed, from the plan it was asked for, after the passes it reports.
    printed = next(s for s in document["sentinels"] if s["value"] == sentinel.value)
    assert printed["drop"]["function"] == want["function"]
    assert printed["localization"]["stop"].startswith("pinned:")
    assert document["probe"]["passes"][0]["pass"] == 1 and len(document["probe"]["passes"]) <= 8
    assert all(loc.status in ("dropped", "reached") for loc in localizations.values())


def test_a_recorded_run_renders_again_whole(tmp_path):
    run = FIXTURES / "planted" / "daemon-bundle-writer-default"
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    for name in ("events.jsonl", "result.json"):
        (copy / name).write_bytes(gzip.decompress((copy / f"{name}.gz").read_bytes()))
    document = rerender(copy)
    want = planted("daemon-bundle-writer")
    flag = next(s for s in document["sentinels"] if s["source"] == "runtime-flag")
    assert flag["drop"]["function"] == want["function"]
    assert want["function"] in (copy / "report.md").read_text()
