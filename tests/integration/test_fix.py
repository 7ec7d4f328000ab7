"""The fix in patches/containerd/, proven on a real patched build of the default version.

One extra build (the patched v2.1.4, about a minute and a half on two cores, cached
after); the scenarios run with the state backend except the seed, which is
localized with delve before and after the patch.
"""

from __future__ import annotations

import subprocess

import pytest

from harness.versions import DEFAULT_VERSION

from .conftest import PROJECT, run_dir

FIX = PROJECT / "patches" / "containerd" / "carry-image-annotations-v2.patch"
URUNC = "com.urunc.unikernel."


@pytest.fixture(scope="session")
def patched_build(as_root):
    from harness.toolchain import build_containerd

    return build_containerd(DEFAULT_VERSION, [FIX])


def _by(document: dict) -> dict[tuple[str, str], dict]:
    return {(s["source"], s["key"]): s for s in document["sentinels"]}


def test_the_fix_passes_its_go_unit_tests(patched_build):
    from harness.toolchain.build import GCFLAGS
    from harness.toolchain.gocmd import go_binary, go_env

    # Same gcflags as the build, so the go command reuses its compiled packages.
    proc = subprocess.run([go_binary(), "test", f"-gcflags={GCFLAGS}", "-count=1", "-v",
                           "-run", "^TestWithImageAnnotations", "./client/"],
                          cwd=patched_build.src_dir, env=go_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("CarriesOnlyAllowedKeys", "Precedence", "CustomAllowList", "LeavesSpecAloneWithoutAllowedKeys"):
        assert f"--- PASS: TestWithImageAnnotations{name}" in proc.stdout


def test_allowed_keys_reach_the_runtime_and_others_do_not(patched_build, annotrace, no_leftovers):
    result = annotrace("run", "allow-list", "--patch", str(FIX), "--backend", "state", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    assert document["allow_list"]["prefixes"] == [URUNC]
    sentinels = document["sentinels"]
    assert {s["allow_list"] for s in sentinels} == {"allowed", "blocked"}
    for s in sentinels:
        allowed = s["key"].startswith(URUNC)
        assert s["allow_list"] == ("allowed" if allowed else "blocked")
        assert s["reached_runtime"] is allowed, s
        assert s["stages"]["spec"] is allowed and s["stages"]["bundle"] is allowed
    blocked = {s["key"] for s in sentinels if s["allow_list"] == "blocked"}
    assert blocked == {"run.oci.keep_original_groups", "io.kubernetes.cri.sandbox-id",
                       "org.opencontainers.image.stopSignal"}


def test_precedence_run_time_then_manifest_then_index_entry_then_label(shared_build, patched_build, annotrace,
                                                                       no_leftovers):
    result = annotrace("run", "override-precedence", "--patch", str(FIX), "--backend", "state",
                       "--compare-unpatched", "--json")
    assert result.code == 0, result.stderr
    reached = {key for key, s in _by(result.document).items() if s["reached_runtime"]}
    assert reached == {
        ("runtime-flag", f"{URUNC}hypervisor"),       # beats manifest and label
        ("manifest", f"{URUNC}binary"),               # beats label
        ("manifest", f"{URUNC}unikernelType"),        # beats index entry
        ("index-descriptor", f"{URUNC}initrd"),       # beats label
        ("config-label", f"{URUNC}cmdline"),          # only source
    }
    # Without the fix only the run-time value got there.
    section = result.document["compare_unpatched"]
    before = {(r["source"], r["key"]) for r in section["sentinels"] if r["unpatched"]["reached_runtime"]}
    assert before == {("runtime-flag", f"{URUNC}hypervisor")}


def test_seed_verdict_before_and_after_the_fix(shared_build, patched_build, annotrace, no_leftovers):
    result = annotrace("run", "seed-ctr-run", "--patch", str(FIX), "--compare-unpatched", "--no-transcript", "--json")
    assert result.code == 0, result.stderr
    document = result.document
    assert document["containerd"]["patches"] == [FIX.name]
    for (source, key), s in _by(document).items():
        if key.startswith(URUNC):
            assert s["reached_runtime"] and s["verdict"] == "reached" and s["drop"] is None, s
        else:  # com.test.foo is outside the allow-list
            assert s["allow_list"] == "blocked" and not s["reached_runtime"] and s["stages"]["spec"] is False
    section = document["compare_unpatched"]
    for row in section["sentinels"]:
        assert row["unpatched"]["drop"].startswith("core/images.Config (core/images/image.go:267)")
    kinds = {(c["sentinel"], c["kind"]) for c in section["changes"]}
    for key in ("binary", "hypervisor", "unikernelType"):
        assert (f"manifest:{URUNC}{key}", "drop-disappeared") in kinds
    text = (run_dir(document) / "report.md").read_text()
    assert "## Before and after the patch" in text and "made the difference" in text
