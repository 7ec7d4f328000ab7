"""The recorder: an OCI runtime stand-in that saves what the runtime receives, then runs runc.

It is installed as `runc` first on the sandboxed daemon's PATH, so the shim calls
it for every container whatever the client asked for. On `create` (and `run`) it
copies `<bundle>/config.json` byte for byte, and `/urunc.json` from the mounted
rootfs when present (urunc's fallback source), before exec'ing the real runc.
It records even when the real runtime then fails.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ToolMissing

_SCRIPT = """#!/bin/sh
# annotrace recorder (generated): save config.json as the runtime receives it, then run runc.
REC_DIR={rec_dir}
REAL_RUNC={real_runc}
bundle=""
action=""
prev=""
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle="$arg" ;; esac
  case "$arg" in
    --bundle=*) bundle="${{arg#--bundle=}}" ;;
    create|run) [ -z "$action" ] && action="$arg" ;;
  esac
  prev="$arg"
done
printf '%s\\n' "$*" >> "$REC_DIR/invocations.log"
if [ -n "$action" ] && [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  out="$REC_DIR/$(date +%s%N)-$$-$action"
  mkdir -p "$out"
  cp "$bundle/config.json" "$out/config.json"
  printf '%s\\n' "$bundle" > "$out/bundle"
  if [ -f "$bundle/rootfs/urunc.json" ]; then
    cp "$bundle/rootfs/urunc.json" "$out/rootfs-urunc.json"
  fi
fi
exec "$REAL_RUNC" "$@"
"""


RUNTIME_ACTIONS = ("create", "run")  # what the recorder keeps; the shim wrapper keeps "bundle" (see shim.py)


@dataclass(frozen=True)
class Recording:
    """One runtime invocation that carried a bundle, or (action "bundle") a bundle the daemon wrote."""

    directory: Path
    action: str
    bundle: str

    @property
    def config_json(self) -> Path:
        return self.directory / "config.json"

    @property
    def urunc_json(self) -> Path | None:
        path = self.directory / "rootfs-urunc.json"
        return path if path.is_file() else None


def real_runc() -> str:
    for candidate in ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"):
        if Path(candidate).is_file():
            return candidate
    found = shutil.which("runc")
    if found is None:
        raise ToolMissing("runc", "install Debian's runc package (scripts/setup.sh does)")
    return found


def install_recorder(bin_dir: Path, recordings: Path) -> Path:
    """Write the recorder as `bin_dir/runc`, recording into `recordings`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    recordings.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "runc"
    script.write_text(_SCRIPT.format(rec_dir=shlex.quote(str(recordings)), real_runc=shlex.quote(real_runc())))
    script.chmod(0o755)
    return script


def recordings_in(recordings: Path) -> list[Recording]:
    """Recordings in the order the runtime was called."""
    found = []
    if not recordings.is_dir():
        return []
    for directory in sorted(p for p in recordings.iterdir() if p.is_dir()):
        action = directory.name.rsplit("-", 1)[-1]
        bundle = (directory / "bundle").read_text().strip() if (directory / "bundle").is_file() else ""
        found.append(Recording(directory, action, bundle))
    return found
