"""The three probe backends on a real build: the same drop point and the same stage map.

One `annotrace compare` runs the seed scenario under delve, gdb and gotrace (the
instrumented build is made once and cached beside the shared build), and every
backend must name core/images.Config for every manifest sentinel and agree with
delve on verdicts and the stage map.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.versions import DEFAULT_VERSION

IMAGES_CONFIG = "github.com/containerd/containerd/v2/core/images.Config"


def test_delve_gdb_and_gotrace_agree_on_the_seed_scenario(shared_build, annotrace, no_leftovers):
    result = annotrace("compare", "seed-ctr-run", "--backends", "delve,gdb,gotrace", "--containerd",
                       DEFAULT_VERSION, "--json", timeout=1800)
    assert result.code == 0, result.stderr[-3000:]
    document = result.document
    views = {v["backend"]: v for v in document["views"]}
    assert set(views) == {"delve", "gdb", "gotrace"}
    for backend, view in views.items():
        assert view["error"] is None, (backend, view["error"])
        assert len(view["drops"]) == 4
        for key, drop in view["drops"].items():
            assert view["verdicts"][key] == "dropped", (backend, key)
            assert drop.rsplit(":", 1)[0] == IMAGES_CONFIG, (backend, key, drop)
            assert view["stages"][key]["manifest"] is True and view["stages"][key]["runtime"] is False
        assert view["costs"]["hits"] > 0 and view["costs"]["passes"] == 1
        # Each backend saw images.Config hold the sentinel (its own evidence, not a copy of delve's).
        assert all(IMAGES_CONFIG in carriers for carriers in view["carriers"].values()), backend
    for backend, verdict in document["agreement"]["backends"].items():
        assert verdict["agrees"], (backend, verdict)
    # The comparison is kept with the command that made it.
    out = Path(document["results_dir"])
    assert json.loads((out / "compare.json").read_text())["agreement"] == document["agreement"]
    assert "annotrace compare seed-ctr-run" in (out / "COMMAND").read_text()
    # gotrace left its execution traces beside its run, for `go tool trace`.
    gotrace_dir = Path(views["gotrace"]["results_dir"])
    gotrace_dir = gotrace_dir if gotrace_dir.is_absolute() else Path(__file__).resolve().parents[2] / gotrace_dir
    traces = sorted(p.name for p in (gotrace_dir / "traces").glob("*.trace"))
    assert any(t.startswith("ctr-") for t in traces) and any(t.startswith("containerd-") for t in traces)


def test_compare_rejects_an_unknown_backend(annotrace):
    result = annotrace("compare", "--backends", "delve,lldb")
    assert result.code == 2
    assert result.error_lines and "--backends needs two or more of delve,gdb,gotrace" in result.error_lines[0]
