"""Go tools the harness installs into its cache: a pinned delve and the statedump helper.

Delve must be at least as new as the Go that built its target; the pin below
fits the Go on this machine class (go1.26). Its version goes into every report.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from harness.console import step
from harness.errors import HarnessError
from harness.paths import cache_dir
from harness.toolchain.build import _locked
from harness.toolchain.gocmd import go_binary, go_env, go_version, run_logged

DELVE_MODULE = "github.com/go-delve/delve"
DELVE_VERSION = "v1.27.2"

STATEDUMP_SRC = Path(__file__).resolve().parent.parent / "sandbox" / "statedump"


def install_delve(version: str = DELVE_VERSION) -> Path:
    """`go install` delve at a pinned version into the cache; reused when present."""
    goversion = go_version()
    target = cache_dir() / "tools" / f"delve-{version}-{goversion}"
    dlv = target / "dlv"
    with _locked(cache_dir() / "locks" / f"{target.name}.lock"):
        if dlv.is_file():
            return dlv
        target.mkdir(parents=True, exist_ok=True)
        step(f"installing delve {version} with {goversion}")
        code = run_logged(
            [go_binary(), "install", f"{DELVE_MODULE}/cmd/dlv@{version}"],
            go_env(GOBIN=str(target)),
            target,
            target / "install.log",
            "go install dlv",
        )
        if code != 0 or not dlv.is_file():
            raise HarnessError(f"could not install delve {version}; see {target / 'install.log'}")
        return dlv


def delve_version(dlv: Path) -> str:
    proc = subprocess.run([str(dlv), "version"], capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def build_statedump() -> Path:
    """Build the small Go program that reads a daemon's records through its gRPC API."""
    sources = sorted(p for p in STATEDUMP_SRC.iterdir() if p.suffix in (".go", ".mod", ".sum"))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    target = cache_dir() / "tools" / f"statedump-{digest.hexdigest()[:12]}"
    binary = target / "statedump"
    with _locked(cache_dir() / "locks" / f"{target.name}.lock"):
        if binary.is_file():
            return binary
        target.mkdir(parents=True, exist_ok=True)
        work = target / "src"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(STATEDUMP_SRC, work)
        step("building the statedump helper")
        code = run_logged(
            [go_binary(), "build", "-o", str(binary), "."], go_env(), work, target / "build.log", "go build statedump"
        )
        if code != 0:
            raise HarnessError(f"could not build the statedump helper; see {target / 'build.log'}")
        return binary


def tool_versions(dlv: Path | None) -> dict:
    return {"go": go_version(), "delve": delve_version(dlv) if dlv else None, "delve_pin": DELVE_VERSION}


__all__ = ["DELVE_VERSION", "build_statedump", "delve_version", "install_delve", "tool_versions"]
