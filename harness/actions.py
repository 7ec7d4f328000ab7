"""Deliver the scenario's image to the sandbox and run it the way a user would with ctr.

The container waits on stdin (see image.layout.DEFAULT_CMD) so the live
container record and bundle can be read before it exits; with `--rm` both are
gone afterwards.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.console import step
from harness.errors import HarnessError, Unsupported
from harness.image.layout import ImageLayout, layout_tar
from harness.image.scenario import Scenario, Sentinel
from harness.sandbox.daemon import Sandbox
from harness.sandbox.registry import Registry
from harness.stagemap import STATE_FILES
from harness.toolchain.tools import build_statedump

RUNNING_TIMEOUT = 90.0
EXIT_TIMEOUT = 60.0

_FLAG = re.compile(r"^\s+(--[a-z0-9-]+)", re.M)


@dataclass
class ActionResult:
    container_id: str
    commands: list[list[str]] = field(default_factory=list)
    exit_code: int | None = None
    output: str = ""
    captured: dict[str, Path] = field(default_factory=dict)  # what was read while the task ran

    def to_dict(self) -> dict:
        return {
            "container_id": self.container_id,
            "commands": [" ".join(c) for c in self.commands],
            "exit_code": self.exit_code,
            "captured": {k: str(v) for k, v in self.captured.items()},
        }


class StateReader:
    """Reads the daemon's records through its gRPC API (the statedump helper)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.binary = build_statedump()

    def _run(self, *args: str, text: bool = True):
        command = [str(self.binary), "--address", str(self.sandbox.address), "--namespace", self.sandbox.namespace, *args]
        proc = subprocess.run(command, capture_output=True, text=text, timeout=60)
        if proc.returncode != 0:
            detail = proc.stderr if text else proc.stderr.decode(errors="replace")
            raise HarnessError(f"reading daemon state failed ({' '.join(args)}): {detail.strip()}")
        return proc.stdout

    def images(self) -> list[dict]:
        return json.loads(self._run("images"))

    def container(self, container_id: str) -> dict:
        return json.loads(self._run("container", container_id))

    def content(self, digest: str) -> bytes:
        return self._run("content", digest, text=False)


def ctr_flags(sandbox: Sandbox, *subcommand: str) -> set[str]:
    """The long flags the built ctr accepts for a subcommand (e.g. run)."""
    proc = sandbox.ctr(*subcommand, "--help", check=False, log=False)
    return set(_FLAG.findall(proc.stdout + proc.stderr))


def deliver(sandbox: Sandbox, scenario: Scenario, layout: ImageLayout, registry: Registry | None) -> str:
    """Get the image into the daemon; returns the image reference to run."""
    if scenario.image.delivery == "registry":
        assert registry is not None
        reference = registry.push(layout, scenario.image.name, scenario.image.tag)
        step(f"ctr images pull --plain-http {reference}")
        sandbox.ctr("images", "pull", "--plain-http", reference, timeout=300)
        return reference
    archive = layout_tar(layout, layout.directory.parent / "image.tar")
    step(f"ctr images import {archive.name}")
    sandbox.ctr("images", "import", str(archive), timeout=300)
    return layout.reference


def runtime_flag_args(sandbox: Sandbox, scenario: Scenario, sentinels: list[Sentinel], subcommand: tuple[str, ...]) -> list[str]:
    values = [s for s in sentinels if s.source == "runtime-flag"]
    if not values:
        return []
    flag = f"--{scenario.action.runtime_flag}"
    if flag not in ctr_flags(sandbox, *subcommand):
        raise Unsupported(
            f"ctr {sandbox.build.version} has no `{' '.join(subcommand)} {flag}` flag; "
            f"use runtime_flag = \"label\" in the scenario's [action] or a newer containerd"
        )
    args: list[str] = []
    for sentinel in values:
        args += [flag, f"{sentinel.key}={sentinel.value}"]
    return args


def _task_status(sandbox: Sandbox, container_id: str) -> str | None:
    proc = sandbox.ctr("tasks", "ls", check=False, log=False, timeout=15)
    for line in proc.stdout.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == container_id:
            return parts[-1]
    return None


def _wait_running(sandbox: Sandbox, process, container_id: str) -> bool:
    """Until the task's process exists: the shim writes init.pid into the bundle once runc created it.

    Watching the file asks the daemon nothing, so a probed daemon sees no polling requests; a task
    whose bundle shows no such file after a while is asked for by `ctr tasks ls`, every few seconds."""
    deadline = time.monotonic() + RUNNING_TIMEOUT
    pid_file = sandbox.bundle_dir(container_id) / "init.pid"
    asked = time.monotonic() + 15.0  # the file's first chance, before any polling request
    while time.monotonic() < deadline:
        if pid_file.is_file() and pid_file.stat().st_size > 0:
            return True
        if process.poll() is not None:
            return False
        if time.monotonic() - asked > 3.0:
            asked = time.monotonic()
            if _task_status(sandbox, container_id) == "RUNNING":
                return True
        time.sleep(0.05)
    return False


def _capture_live(sandbox: Sandbox, reader: StateReader, container_id: str, out: Path, result: ActionResult) -> None:
    """Read the container record and the daemon's bundle config.json while the task runs."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        record = reader.container(container_id)
    except HarnessError:
        record = None
    if record is not None:
        path = out / STATE_FILES["container"]
        path.write_text(json.dumps(record, indent=2) + "\n")
        result.captured["container"] = path
    bundle_config = sandbox.bundle_dir(container_id) / "config.json"
    if bundle_config.is_file():
        path = out / STATE_FILES["bundle"]
        path.write_bytes(bundle_config.read_bytes())
        result.captured["bundle"] = path


class PlainRun:
    """A ctr command run directly (no debugger)."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env)

    def poll(self) -> int | None:
        return self.process.poll()

    def finish(self, line: str, timeout: float) -> tuple[int | None, str]:
        try:
            output, _ = self.process.communicate(input=line, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        return self.process.returncode, output or ""

    def abort(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def plain_launcher(command: list[str], env: dict[str, str]):
    return contextlib.nullcontext(PlainRun(command, env))


def _finish(running, line: str, label: str) -> tuple[int | None, str]:
    """Let a launched ctr command end (after `line` on its stdin); never leave it running."""
    try:
        return running.finish(line, EXIT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"`{label}` did not finish within {EXIT_TIMEOUT:.0f}s") from exc
    finally:
        running.abort()


def _drive(sandbox: Sandbox, reader: StateReader, command: list[str], container_id: str, out: Path,
           result: ActionResult, launch=plain_launcher) -> None:
    """Start a blocking ctr command, capture while its task runs, then let it finish."""
    sandbox.log_command(command)
    result.commands.append(command)
    with launch(command, sandbox.client_env()) as running:
        if _wait_running(sandbox, running, container_id):
            _capture_live(sandbox, reader, container_id, out, result)
        # One line on stdin lets the container's `read` return and the task exit.
        code, output = _finish(running, "annotrace: done\n", " ".join(command[-3:]))
    result.exit_code = code
    result.output += output


def run_action(sandbox: Sandbox, scenario: Scenario, sentinels: list[Sentinel], reference: str,
               container_id: str, out: Path, launch=plain_launcher) -> ActionResult:
    """Run the scenario's action; `out` (the run's state dir) receives what was captured."""
    reader = StateReader(sandbox)
    result = ActionResult(container_id)
    out.mkdir(parents=True, exist_ok=True)
    fifo = ["--fifo-dir", str(sandbox.fifo_dir)]
    if scenario.action.kind == "run":
        extra = runtime_flag_args(sandbox, scenario, sentinels, ("run",))
        rm = ["--rm"] if scenario.action.rm else []
        command = sandbox.ctr_command("run", *rm, *fifo, *extra, reference, container_id)
        step(f"ctr run {' '.join(rm + extra)} {reference} {container_id}")
        _drive(sandbox, reader, command, container_id, out, result, launch)
    else:
        extra = runtime_flag_args(sandbox, scenario, sentinels, ("containers", "create"))
        create = sandbox.ctr_command("containers", "create", *extra, reference, container_id)
        step(f"ctr containers create {' '.join(extra)} {reference} {container_id}")
        sandbox.log_command(create)
        result.commands.append(create)
        with launch(create, sandbox.client_env()) as running:  # probed like `run` when under a debugger
            code, output = _finish(running, "", "ctr containers create")
        result.output += output
        if code != 0:
            raise HarnessError(f"`ctr containers create` failed ({code}): {(output.strip().splitlines() or ['?'])[-1]}")
        start = sandbox.ctr_command("tasks", "start", *fifo, container_id)
        step(f"ctr tasks start {container_id}")
        _drive(sandbox, reader, start, container_id, out, result, launch)
        if scenario.action.rm:
            sandbox.ctr("tasks", "delete", container_id, check=False)
            sandbox.ctr("containers", "delete", container_id, check=False)
    if result.exit_code not in (0, None):
        step(f"the ctr command exited with {result.exit_code}: {result.output.strip()[-200:]}")
    (out / "ctr-output.txt").write_text(result.output)
    return result
