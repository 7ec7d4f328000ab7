"""The shim wrapper: what the daemon execs as `containerd-shim-runc-v2`.

It is installed first on the sandboxed daemon's PATH (containerd looks the runtime's
shim binary up on PATH before it looks beside itself), so every task's shim goes
through it. For `start` (the daemon runs it in the bundle directory, right after it
wrote config.json) it

- copies config.json as the daemon wrote it into the run's recordings
  (`<time>-<pid>-bundle/`): the `bundle` stage, kept apart from what the runtime
  later receives (the `runtime` stage), so a rewrite by the shim is a stage of its own;
- when a probe pass watches the shim (`<attach dir>/enabled` exists), runs the real
  `start`, which spawns the long-lived shim server, and before it hands the server's
  address to the daemon, asks the harness to attach a debugger to that server and
  waits until it has (`<id>.request`, then `<id>.ready`): the daemon's first request
  (task Create) then reaches a server that is already watched.

Every other action (`delete`, ...) goes straight to the real shim.
"""

from __future__ import annotations

import shlex
from pathlib import Path

SHIM_BINARY = "containerd-shim-runc-v2"
ATTACH_WAIT_SECONDS = 60

_SCRIPT = """#!/bin/sh
# annotrace shim wrapper (generated): keep the bundle as the daemon wrote it, hold the shim
# server until a debugger is attached when a probe pass asks for it, then behave as the shim.
REAL={real}
REC_DIR={rec_dir}
ATTACH_DIR={attach_dir}
action=""
id=""
prev=""
for arg in "$@"; do
  case "$prev" in -id) id="$arg" ;; esac
  case "$arg" in start) action=start ;; esac
  prev="$arg"
done
[ "$action" = start ] || exec "$REAL" "$@"
if [ -f config.json ]; then
  out="$REC_DIR/$(date +%s%N)-$$-bundle"
  mkdir -p "$out"
  cp config.json "$out/config.json"
  pwd > "$out/bundle"
fi
[ -e "$ATTACH_DIR/enabled" ] && [ -n "$id" ] || exec "$REAL" "$@"
output=$("$REAL" "$@")
code=$?
if [ "$code" -eq 0 ]; then
  : > "$ATTACH_DIR/$id.request"
  n=0
  while [ ! -e "$ATTACH_DIR/$id.ready" ] && [ "$n" -lt {polls} ]; do
    sleep 0.05
    n=$((n + 1))
  done
fi
printf '%s\\n' "$output"
exit "$code"
"""


def install_shim_wrapper(bin_dir: Path, real_shim: Path, recordings: Path, attach_dir: Path) -> Path:
    """Write the wrapper as `bin_dir/containerd-shim-runc-v2`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    recordings.mkdir(parents=True, exist_ok=True)
    attach_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    script = bin_dir / SHIM_BINARY
    script.write_text(_SCRIPT.format(real=shlex.quote(str(real_shim)), rec_dir=shlex.quote(str(recordings)),
                                     attach_dir=shlex.quote(str(attach_dir)), polls=ATTACH_WAIT_SECONDS * 20))
    script.chmod(0o755)
    return script


def shim_server_pid(real_shim: Path, container_id: str) -> int | None:
    """The shim server of `container_id`: the real shim binary running without `start`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            exe = (entry / "exe").resolve()
        except OSError:
            continue
        if exe != real_shim.resolve():
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "start" in args or "delete" in args:
            continue
        if "-id" in args and args.index("-id") + 1 < len(args) and args[args.index("-id") + 1] == container_id:
            return int(entry.name)
    return None
