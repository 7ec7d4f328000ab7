"""Running the go command: one place that sets its environment and shows progress."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from rich.markup import escape

from harness.console import err
from harness.errors import HarnessError, ToolMissing


def go_binary() -> str:
    path = shutil.which("go")
    if path is None:
        raise ToolMissing("go", "install Go 1.22 or newer and put it on PATH")
    return path


def go_env(toolchain: str = "local", **extra: str) -> dict[str, str]:
    """Environment for the go command.

    `toolchain` is a GOTOOLCHAIN value: "local" to use the installed Go, or
    "go1.22.12" to have the go command fetch that toolchain from the module proxy.
    """
    env = dict(os.environ)
    env.update(
        GOTOOLCHAIN=toolchain,
        GO111MODULE="on",
        GOFLAGS="-mod=mod -buildvcs=false",
        GOWORK="off",
    )
    env.update(extra)
    return env


def go_query(args: list[str], toolchain: str = "local", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A quick go command whose output we parse (go list, go version, go env)."""
    return subprocess.run(
        [go_binary(), *args],
        env=go_env(toolchain),
        cwd=cwd or Path("/"),
        capture_output=True,
        text=True,
        check=False,
    )


def go_json(args: list[str], cwd: Path | None = None) -> dict:
    proc = go_query(args, cwd=cwd)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def go_version(toolchain: str = "local") -> str:
    """`go1.26.8` for the given toolchain."""
    proc = go_query(["env", "GOVERSION"], toolchain=toolchain)
    if proc.returncode != 0:
        raise HarnessError(f"go toolchain {toolchain} is not usable: {_last_line(proc.stderr)}")
    return proc.stdout.strip()


def run_logged(cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path, label: str) -> int:
    """Run a long go command, keep its whole output in log_path, echo it dimmed as progress."""
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            err.print(f"[dim]  {label}: {escape(line.rstrip())}[/]", highlight=False, soft_wrap=True)
        return proc.wait()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


last_line = _last_line
