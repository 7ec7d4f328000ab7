"""The seed transcript: drive delve's terminal the way the person in the seed did.

`dlv exec ctr -- ... run ...`, `break` at the drop point, `continue`, `print` the
variable that held the sentinel, `bt`; then let the container finish. The text is
saved as transcript.txt and goes into the report, folded: it is the part a
maintainer recognises at once.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path

import pexpect

from harness.actions import runtime_flag_args
from harness.errors import HarnessError

PROMPT = r"\(dlv\) "
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _variable_root(evidence: list[str]) -> str | None:
    """'local manifest.Annotations["k"] at return' -> 'manifest'."""
    for item in evidence:
        match = re.match(r"(?:local|argument) ([A-Za-z_][A-Za-z0-9_]*)", item)
        if match:
            return match.group(1)
    return None


def _task_running(context, container_id: str) -> bool:
    proc = context.sandbox.ctr("tasks", "ls", check=False, log=False, timeout=15)
    return any(line.split()[:1] == [container_id] and "RUNNING" in line for line in proc.stdout.splitlines())


def set_aside_recordings(results_dir: Path, container_id: str) -> None:
    """Move what the runtime received for `container_id` out of recordings/ (the stage map reads only those).

    The transcript is a demonstration, not a probed run: what it hands the runtime
    goes to transcript-recordings/ instead.
    """
    recordings = results_dir / "recordings"
    for entry in sorted(recordings.iterdir()) if recordings.is_dir() else []:
        bundle = entry / "bundle"
        if bundle.is_file() and bundle.read_text().strip().endswith("/" + container_id):
            aside = results_dir / "transcript-recordings"
            aside.mkdir(exist_ok=True)
            shutil.move(str(entry), aside / entry.name)


def record_transcript(context, outcome, container_id: str) -> Path:
    drop = next(loc.drop for loc in outcome.localizations.values() if loc.drop is not None)
    if drop.process != "ctr":
        raise HarnessError(f"the drop point is in {drop.process}; the terminal transcript covers ctr only")
    variable = _variable_root([g for h in drop.invocations for g in h.got])
    transcript_id = f"{container_id}-t"
    # The same run-time flags as the probed runs, so the transcript shows the same program.
    flags = runtime_flag_args(context.sandbox, context.scenario, context.sentinels, ("run",))
    ctr_args = context.sandbox.ctr_command("run", "--rm", "--fifo-dir", str(context.sandbox.fifo_dir), *flags,
                                           context.reference, transcript_id)
    command = [str(context.dlv), "exec", ctr_args[0], "--", *ctr_args[1:]]
    log = io.StringIO()
    child = pexpect.spawn(command[0], command[1:], encoding="utf-8", timeout=120, env=context.sandbox.client_env(),
                          dimensions=(50, 200))
    child.logfile_read = log
    location = f"{drop.file}:{drop.line}"
    try:
        child.expect(PROMPT)
        for line in (f"break {location}", "continue", *( [f"print {variable}"] if variable else []), "bt", "clearall"):
            child.sendline(line)
            child.expect(PROMPT)
        child.sendline("continue")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _task_running(context, transcript_id):
            time.sleep(0.2)
        # The container waits for a line on stdin, which delve's terminal owns here: end the task instead.
        context.sandbox.ctr("tasks", "kill", "-s", "SIGKILL", transcript_id, check=False, timeout=30)
        child.expect(r"Process \d+ has exited with status \d+")
        child.expect(PROMPT)
        child.sendline("quit")
        child.expect(pexpect.EOF)
    except (pexpect.TIMEOUT, pexpect.EOF) as exc:
        raise HarnessError(f"delve's terminal did not answer as expected ({type(exc).__name__})") from exc
    finally:
        if child.isalive():
            child.terminate(force=True)
        text = _ANSI.sub("", log.getvalue())
        path = context.results_dir / "transcript.txt"
        path.write_text(f"$ {' '.join(command)}\n{text}")
        set_aside_recordings(context.results_dir, transcript_id)
    return path
