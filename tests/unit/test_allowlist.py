"""The allow-list a fix declares in its patch header, and the before/after section of a patched run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.allowlist import AllowList, mark_sentinels, read_allow_list
from harness.regress.beforeafter import before_after, before_after_markdown

PROJECT = Path(__file__).resolve().parents[2]
PATCHES = sorted((PROJECT / "patches" / "containerd").glob("*.patch"))
SEED_V2 = PROJECT / "tests" / "fixtures" / "runs" / "seed-ctr-run-v2.1.4" / "result.json"


@pytest.mark.parametrize("patch", PATCHES, ids=[p.name for p in PATCHES])
def test_every_fix_declares_its_allow_list(patch):
    allow = read_allow_list([patch])
    assert (allow.prefixes, allow.carried_sources, allow.patch) == (
        ("com.urunc.unikernel.",), ("config-label", "index-descriptor", "manifest"), patch.name)
    # and names its own functions for the delve plan, in the form --probe takes
    [probe] = allow.probes
    assert probe.startswith("ctr:") and "ImageAnnotations" in probe


def test_status_by_source_and_key():
    allow = AllowList(("com.urunc.unikernel.",), ("config-label", "index-descriptor", "manifest"), "x.patch")
    assert allow.status("manifest", "com.urunc.unikernel.binary") == "allowed"
    assert allow.status("manifest", "run.oci.keep_original_groups") == "blocked"
    assert allow.status("config-label", "io.kubernetes.cri.sandbox-id") == "blocked"
    assert allow.status("index", "com.urunc.unikernel.binary") == "not carried"
    assert allow.status("runtime-flag", "anything") == "not carried"
    assert AllowList(("",), ("manifest",), "x").status("manifest", "k") == "blocked"  # "" allows nothing


def test_header_stops_at_the_diff(tmp_path):
    patch = tmp_path / "p.patch"
    patch.write_text("no fields here\n--- a/x\n+++ b/x\n+annotrace-allow-prefixes: evil.\n")
    assert read_allow_list([patch]) is None
    patch.write_text("annotrace-allow-prefixes: a. b.\n--- a/x\n")
    assert read_allow_list([tmp_path / "none.patch", patch][1:]).prefixes == ("a.", "b.")


def test_mark_sentinels_only_with_an_allow_list():
    docs = [{"source": "manifest", "key": "com.test.foo"}, {"source": "manifest", "key": "com.urunc.unikernel.binary"}]
    mark_sentinels(docs, None)
    assert "allow_list" not in docs[0]
    mark_sentinels(docs, AllowList(("com.urunc.unikernel.",), ("manifest",), "x"))
    assert [d["allow_list"] for d in docs] == ["blocked", "allowed"]


def test_before_after_names_what_the_patch_changed():
    unpatched = json.loads(SEED_V2.read_text())  # a real unpatched run (state backend)
    patched = copy.deepcopy(unpatched)
    patched["containerd"]["patches"] = ["carry-image-annotations-v2.patch"]
    patched["results_dir"] = "results/runs/after"
    allow = AllowList(("com.urunc.unikernel.",), ("config-label", "index-descriptor", "manifest"), "x")
    for doc in patched["sentinels"]:  # what the patched build showed for the seed
        if doc["key"].startswith("com.urunc.unikernel."):
            doc["stages"].update(spec=True, bundle=True, runtime=True)
            doc["furthest_stage"], doc["reached_runtime"] = "runtime", True
    mark_sentinels(patched["sentinels"], allow)
    section = before_after(unpatched, patched)
    assert section["patches"] == ["carry-image-annotations-v2.patch"]
    changed = {c["sentinel"] for c in section["changes"]}
    assert changed == {f"manifest:com.urunc.unikernel.{k}" for k in ("binary", "hypervisor", "unikernelType")}
    text = "\n".join(before_after_markdown(section))
    assert "| manifest | `com.urunc.unikernel.binary` | stops after manifest | **runtime** | allowed |" in text
    assert "made the difference for `com.urunc.unikernel." in text
    assert "Stopped by the allow-list, as intended: `com.test.foo` (manifest, not in the runtime spec)" in text


def test_before_after_of_a_real_patched_run_names_the_fix_function_that_held_a_blocked_key():
    # results/fix-v2.4.2/seed-ctr-run: a real --compare-unpatched run (see its COMMAND)
    run = PROJECT / "results" / "fix-v2.4.2" / "seed-ctr-run"
    patched = json.loads((run / "result.json").read_text())
    unpatched = json.loads((run / "unpatched" / "result.json").read_text())
    held = {row["key"]: row["held_by_fix"] for row in before_after(unpatched, patched)["sentinels"]}
    assert held == {"com.test.foo": ["client.ImageAnnotations"], "com.urunc.unikernel.binary": [],
                    "com.urunc.unikernel.hypervisor": [], "com.urunc.unikernel.unikernelType": []}
