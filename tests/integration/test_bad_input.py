"""Bad input and environment: one clear line, exit code 2, nothing left running."""

from __future__ import annotations

import socket
from pathlib import Path

from harness.paths import cache_dir
from harness.versions import DEFAULT_VERSION


def assert_one_clear_error(result, *fragments: str) -> str:
    assert result.code == 2, (result.code, result.stderr)
    assert result.stdout == ""
    assert len(result.error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = result.error_lines[0]
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_unknown_version(annotrace, no_leftovers):
    result = annotrace("build", "--containerd", "v9.9.9")
    assert_one_clear_error(result, "unknown containerd version 'v9.9.9'", "v2.1.4")


def test_unreadable_version(annotrace, no_leftovers):
    result = annotrace("run", "seed-ctr-run", "--containerd", "banana", "--json")
    assert_one_clear_error(result, "cannot read containerd version 'banana'")


def test_unknown_scenario(annotrace, no_leftovers):
    assert_one_clear_error(annotrace("run", "no-such-scenario"), "no scenario 'no-such-scenario'", "seed-ctr-run")


def test_malformed_scenario(annotrace, tmp_path, no_leftovers):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[image]\nname = "annotrace/bad"\ncolour = "red"\n')
    assert_one_clear_error(annotrace("run", str(bad)), "unknown field(s) colour in [image]")
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken\n')
    assert_one_clear_error(annotrace("run", str(broken)), "is not valid TOML")


def test_missing_patch_file(annotrace, tmp_path, no_leftovers):
    missing = tmp_path / "nope.patch"
    assert_one_clear_error(annotrace("build", "--containerd", DEFAULT_VERSION, "--patch", str(missing)),
                           "does not exist")


def test_patch_that_does_not_apply(shared_build, annotrace, tmp_path, no_leftovers):
    patch = tmp_path / "stale.patch"
    patch.write_text(
        "--- a/core/images/image.go\n+++ b/core/images/image.go\n@@ -1,3 +1,3 @@\n"
        "-this line is not in containerd\n+nor is this one\n context\n"
    )
    builds_before = set((cache_dir() / "builds").iterdir())
    line = assert_one_clear_error(annotrace("build", "--containerd", DEFAULT_VERSION, "--patch", str(patch)),
                                  "patch stale.patch does not apply", "regenerate it")
    assert DEFAULT_VERSION in line
    # The half-made cache entry is removed.
    assert set((cache_dir() / "builds").iterdir()) == builds_before


def test_busy_registry_port(shared_build, annotrace, no_leftovers):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = annotrace("reproduce", "--registry-port", str(port), "--json")
    assert_one_clear_error(result, f"127.0.0.1:{port} is busy")


def test_missing_tool_is_named(shared_build, annotrace, tmp_path, no_leftovers):
    # A PATH without docker-registry: the registry cannot start; say what to install.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("go", "git", "unshare", "mount", "umount", "sh"):
        source = next(Path(d) / tool for d in ("/usr/local/go/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")
                      if (Path(d) / tool).exists())
        (fake_bin / tool).symlink_to(source)
    result = annotrace("reproduce", env={"PATH": str(fake_bin)})
    assert_one_clear_error(result, "docker-registry", "scripts/setup.sh")


def test_compare_unpatched_needs_a_patch(annotrace, no_leftovers):
    assert_one_clear_error(annotrace("run", "seed-ctr-run", "--compare-unpatched"), "--compare-unpatched needs")


def test_main_is_refused_by_this_proxy_with_a_hint(annotrace, no_leftovers):
    assert_one_clear_error(annotrace("build", "--containerd", "main"), "'main' is not available", "latest")


def test_pre_module_release(annotrace, no_leftovers):
    assert_one_clear_error(annotrace("build", "--containerd", "v1.4.13"), "has no go.mod", "v1.5 or newer")


def test_missing_baseline_dir(annotrace, tmp_path, no_leftovers):
    assert_one_clear_error(annotrace("check", "--baseline", str(tmp_path / "none")), "does not exist")


def test_bisect_range_backwards(annotrace, no_leftovers):
    assert_one_clear_error(annotrace("bisect", "--scenario", "seed-ctr-run", "--good", "v2.1.4", "--bad", "v2.0.14"),
                           "is not older than")


def test_compare_unpatched_checks_the_patch_before_running(annotrace, tmp_path, no_leftovers):
    result = annotrace("run", "seed-ctr-run", "--compare-unpatched", "--patch", str(tmp_path / "missing.patch"))
    assert_one_clear_error(result, "missing.patch does not exist")
    assert "unpatched run first" not in result.stderr
