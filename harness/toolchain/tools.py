"""Go tools the harness installs into its cache: a pinned delve and our small Go helpers.

Delve must be at least as new as the Go that built its target; the pin below
fits the Go on this machine class (go1.26). Its version goes into every report.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from harness.console import step
from harness.errors import HarnessError, ToolMissing
from harness.paths import cache_dir
from harness.toolchain.build import _locked
from harness.toolchain.gocmd import go_binary, go_env, go_version, run_logged

DELVE_MODULE = "github.com/go-delve/delve"
DELVE_VERSION = "v1.27.2"

STATEDUMP_SRC = Path(__file__).resolve().parent.parent / "sandbox" / "statedump"
DWARFINFO_SRC = Path(__file__).resolve().parent.parent / "probes" / "gdb" / "dwarfinfo"


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


def build_go_tool(name: str, source: Path, package: str = ".") -> Path:
    """Build one of our small Go programs (a module under harness/) into the cache, keyed by its sources."""
    sources = sorted(p for p in source.rglob("*") if p.suffix in (".go", ".mod", ".sum") and p.is_file())
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    binary_name = Path(package).name if package != "." else name
    target = cache_dir() / "tools" / f"{name}-{digest.hexdigest()[:12]}"
    binary = target / binary_name
    with _locked(cache_dir() / "locks" / f"{target.name}.lock"):
        if binary.is_file():
            return binary
        target.mkdir(parents=True, exist_ok=True)
        work = target / "src"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(source, work)
        step(f"building the {binary_name} helper")
        code = run_logged(
            [go_binary(), "build", "-o", str(binary), package], go_env(), work, target / "build.log",
            f"go build {binary_name}",
        )
        if code != 0:
            raise HarnessError(f"could not build the {binary_name} helper; see {target / 'build.log'}")
        return binary


def build_statedump() -> Path:
    """The small Go program that reads a daemon's records through its gRPC API."""
    return build_go_tool("statedump", STATEDUMP_SRC)


def build_dwarfinfo() -> Path:
    """The small Go program that tells the gdb backend what gdb cannot read from Go's DWARF."""
    return build_go_tool("dwarfinfo", DWARFINFO_SRC)


def install_gdb() -> Path:
    """gdb comes from Debian (scripts/setup.sh installs it)."""
    path = shutil.which("gdb")
    if path is None:
        raise ToolMissing("gdb", "install it with `apt-get install gdb` or run scripts/setup.sh")
    return Path(path)


def gdb_version(gdb: Path) -> str:
    proc = subprocess.run([str(gdb), "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout.splitlines() or ["unknown"])[0]


def tool_versions(dlv: Path | None, gdb: Path | None = None) -> dict:
    versions = {"go": go_version(), "delve": delve_version(dlv) if dlv else None, "delve_pin": DELVE_VERSION}
    if gdb is not None:
        versions["gdb"] = gdb_version(gdb)
    return versions


__all__ = ["DELVE_VERSION", "build_dwarfinfo", "build_go_tool", "build_statedump", "delve_version", "gdb_version",
           "install_delve", "install_gdb", "tool_versions"]
