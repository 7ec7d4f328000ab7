"""Unit tests for the gdb backend on recorded gdb/MI records (tests/fixtures/gdb/README.md).

The records come from a real `--backend gdb` run of the seed scenario on containerd v2.1.4.
The same functions the live session uses turn them into events; localization on those
events must name core/images.Config, as it does on the delve recording.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from harness.graph.localize import Scope, localize
from harness.probes.events import Event
from harness.probes.gdb.session import (ARMED_PREFIX, HIT_PREFIX, console_lines, exit_status, mi_quote,
                                        record_to_event)
from harness.versions import V2_LAYOUT

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gdb" / "seed-ctr-run-v2.1.4"
SENTINELS = json.loads((FIXTURE / "sentinels.json").read_text())
SOURCE_ROOT = "/var/cache/annotrace/builds/containerd-v2.1.4-v2-f7face8ab08f0fd4/src"
IMAGES_CONFIG = "github.com/containerd/containerd/v2/core/images.Config"


def _records(process: str) -> list[dict]:
    with gzip.open(FIXTURE / f"gdb-{process}.mi.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _events(process: str) -> list[Event]:
    values = {s["value"] for s in SENTINELS}
    lines, rest = console_lines(_records(process))
    assert rest == ""
    events = []
    for seq, line in enumerate(line for line in lines if line.startswith(HIT_PREFIX)):
        record = json.loads(line[len(HIT_PREFIX):])
        event = record_to_event(record, process, seq, 1, 0.0, SOURCE_ROOT)
        assert {s.value for s in event.sightings} <= values
        events.append(event)
    return events


CTR = _events("ctr")
DAEMON = _events("containerd")


def test_every_hit_becomes_an_event_with_its_stack():
    assert len(CTR) == 46 and len(DAEMON) == 10
    assert all(e.backend == "gdb" and e.stack and e.stack[0].function == e.function for e in CTR + DAEMON)
    assert all(e.goroutine > 0 for e in CTR + DAEMON)  # read from R14 (the g register)
    config = [e for e in CTR if e.function == IMAGES_CONFIG]
    assert [e.kind for e in config] == ["call", "return"] * 4  # four calls, as delve saw (test_localize.py)
    assert {e.file for e in config} == {"core/images/image.go"}  # made relative to the source tree


def test_tracepoints_were_armed_without_failures():
    lines, _ = console_lines(_records("containerd"))
    armed = json.loads(next(line for line in lines if line.startswith(ARMED_PREFIX))[len(ARMED_PREFIX):])
    assert armed["failed"] == {} and armed["maps"] is True and armed["breakpoints"] > 5


def test_images_config_holds_the_manifest_annotations_in_a_local_and_not_in_its_results():
    returned = next(e for e in CTR if e.function == IMAGES_CONFIG and e.kind == "return")
    for sentinel in SENTINELS:
        where = {(s.where, s.path) for s in returned.holds(sentinel["value"])}
        assert ("local", f'manifest.Annotations["{sentinel["key"]}"]') in where
        assert not any(w == "return" for w, _ in where)


@pytest.mark.parametrize("sentinel", SENTINELS, ids=lambda s: s["key"])
def test_localization_on_gdb_events_names_images_config(sentinel):
    events = sorted(CTR + DAEMON, key=lambda e: e.seq)
    loc = localize(sentinel["value"], events, False, scope=Scope.of(V2_LAYOUT))
    assert loc.status == "dropped"
    assert (loc.drop.function, loc.drop.file, loc.drop.line) == (IMAGES_CONFIG, "core/images/image.go", 267)


def test_values_gdb_could_not_read_are_unknown_not_absent():
    unknown = [u for e in DAEMON for u in e.unreadable]
    gdb_blind = [u for u in unknown if u.content == "interface" and u.reason == "unsupported"]
    assert gdb_blind and all(u.detail.startswith("gdb has no type ") for u in gdb_blind)
    # An unknown value is a typed record, never a sighting, and never silently dropped from the event.
    assert all(u.where in ("argument", "local", "return") for u in unknown)


def test_exit_status_from_recorded_stop_record():
    stopped = [r for r in _records("ctr") if r.get("message") == "stopped"]
    assert exit_status(stopped[-1]) == 0
    assert exit_status({"payload": {"reason": "exited", "exit-code": "01"}}) == 1
    assert exit_status({"payload": {"reason": "exited", "exit-code": "010"}}) == 8  # MI writes octal
    assert exit_status({"payload": {"reason": "signal-received"}}) is None


def test_console_lines_joins_split_records():
    records = [{"type": "console", "payload": "annotrace-hit {\"a\""}, {"type": "log", "payload": "x"},
               {"type": "console", "payload": ": 1}\nannotrace-hi"}]
    lines, rest = console_lines(records)
    assert lines == ['annotrace-hit {"a": 1}'] and rest == "annotrace-hi"


def test_mi_quote_escapes_quotes_and_backslashes():
    assert mi_quote('set args a "b" \\c') == '"set args a \\"b\\" \\\\c"'
