"""Unit tests for the shim wrapper (harness/sandbox/shim.py), run against a stand-in shim.

The stand-in is a shell script that records its arguments and prints what a real
`containerd-shim-runc-v2 start` prints (the bootstrap JSON); the wrapper is the
generated script itself, run as the daemon would run it.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from harness.sandbox.recorder import recordings_in
from harness.sandbox.shim import SHIM_BINARY, install_shim_wrapper

BOOTSTRAP = '{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}'


def _setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    real = tmp_path / "real-shim"
    real.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\necho '{BOOTSTRAP}'\n")
    real.chmod(0o755)
    recordings, attach = tmp_path / "recordings", tmp_path / "attach"
    wrapper = install_shim_wrapper(tmp_path / "bin", real, recordings, attach)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"annotations":{"k":"v"}}')
    return wrapper, recordings, attach, bundle


def _start(wrapper: Path, bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(wrapper), "-namespace", "ns", "-id", "c1", "-address", "/x.sock", "start"],
                          cwd=bundle, capture_output=True, text=True, timeout=30)


def test_start_keeps_the_bundle_as_the_daemon_wrote_it(tmp_path):
    wrapper, recordings, _, bundle = _setup(tmp_path)
    assert wrapper.name == SHIM_BINARY
    proc = _start(wrapper, bundle)
    assert proc.returncode == 0
    assert proc.stdout.strip() == BOOTSTRAP
    [recording] = recordings_in(recordings)
    assert recording.action == "bundle"
    assert json.loads(recording.config_json.read_text()) == {"annotations": {"k": "v"}}
    assert recording.bundle == str(bundle)
    assert (tmp_path / "calls").read_text().split() == ["-namespace", "ns", "-id", "c1", "-address", "/x.sock", "start"]


def test_other_actions_go_straight_to_the_real_shim(tmp_path):
    wrapper, recordings, _, bundle = _setup(tmp_path)
    proc = subprocess.run([str(wrapper), "-id", "c1", "delete"], cwd=bundle, capture_output=True, text=True)
    assert proc.returncode == 0
    assert recordings_in(recordings) == []


def test_when_enabled_start_waits_until_the_debugger_is_attached(tmp_path):
    wrapper, _, attach, bundle = _setup(tmp_path)
    (attach / "enabled").touch()
    answered: list[float] = []

    def harness() -> None:  # what passes._ShimWatcher does: see the request, attach, say ready
        deadline = time.monotonic() + 20
        while not (attach / "c1.request").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        answered.append(time.monotonic())
        (attach / "c1.ready").touch()

    watcher = threading.Thread(target=harness)
    watcher.start()
    proc = _start(wrapper, bundle)
    finished = time.monotonic()
    watcher.join()
    assert proc.returncode == 0 and proc.stdout.strip() == BOOTSTRAP
    assert answered and finished >= answered[0]  # the address reached the daemon only after "ready"
