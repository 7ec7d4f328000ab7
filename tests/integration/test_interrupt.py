"""Ctrl-C in the middle of a run tears the sandbox down: no daemon, shim, registry or mount left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from .conftest import PROJECT, _sandbox_processes


def test_interrupt_while_the_daemon_runs(shared_build, results_root, no_leftovers):
    env = {**os.environ, "ANNOTRACE_RESULTS": str(results_root)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "reproduce"], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 300
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "starting containerd" in line:
            break
    assert any("starting containerd" in line for line in seen), "".join(seen)
    # Interrupt only once the sandboxed daemon is up, so teardown has real work to do.
    running = []
    while not running and time.monotonic() < deadline and proc.poll() is None:
        running = _sandbox_processes()
        time.sleep(0.02)
    assert running, "the sandboxed containerd never appeared"
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted; the sandbox was torn down" in rest
