"""Fixtures for integration tests: one shared containerd build, the annotrace CLI, leftover checks.

These tests build containerd from the Go module proxy (cached in ANNOTRACE_CACHE,
default /var/cache/annotrace, so a second CI run rebuilds nothing), start real
daemons, a real registry and real runc. They need root; in CI (CI=true) not being
root is a failure, elsewhere a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.versions import DEFAULT_VERSION

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def as_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("integration tests must run as root in CI (containerd, runc and overlay mounts need it)")
        pytest.skip("integration tests need root (containerd, runc and overlay mounts)")


@pytest.fixture(scope="session")
def shared_build(as_root):
    """containerd DEFAULT_VERSION built once for the whole session (and reused from the cache)."""
    from harness.toolchain import build_containerd

    return build_containerd(DEFAULT_VERSION)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def document(self) -> dict:
        return json.loads(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("annotrace: error:")]


@pytest.fixture(scope="session")
def results_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def annotrace(results_root):
    """Run the real CLI as a user would; results go to a temp dir, not the repo."""

    def run(*args: str, timeout: float = 900, env: dict | None = None) -> CliResult:
        environment = {**os.environ, "ANNOTRACE_RESULTS": str(results_root), **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=PROJECT, env=environment,
                              capture_output=True, text=True, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def _sandbox_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # Sandbox processes run from the private temp dir; a debugger attached to the daemon
        # (gdb) or a daemon started from the build cache names a cached binary instead.
        if "/var/tmp/annotrace-" in cmdline or "/annotrace/builds/" in cmdline:
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


def _snapshot() -> dict:
    return {
        "tmp": {p.name for p in Path("/var/tmp").glob("annotrace-*")},
        "cgroups": {p.name for p in Path("/sys/fs/cgroup").glob("annotrace-*")},
        "run_containerd": Path("/run/containerd").exists(),
    }


@pytest.fixture
def no_leftovers(as_root):
    """Assert a test leaves no process, mount, temp dir, cgroup or /run/containerd behind."""
    before = _snapshot()
    yield
    after = _snapshot()
    assert _sandbox_processes() == []
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if "/var/tmp/annotrace-" in line]
    assert mounts == []
    assert after["tmp"] - before["tmp"] == set()
    assert after["cgroups"] - before["cgroups"] == set()
    assert after["run_containerd"] == before["run_containerd"], "the system's /run/containerd was touched"


def run_dir(document: dict) -> Path:
    """A run's results dir from its --json document (relative to the project when not absolute)."""
    path = Path(document["results_dir"])
    return path if path.is_absolute() else PROJECT / path
