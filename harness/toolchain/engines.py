"""Other high-level runtimes built from the Go module proxy: crictl (cri-tools) and nerdctl.

Like containerd, they are fetched with `go mod download` at a pinned version and built
with debug info into the cache; nothing of theirs is committed. podman comes from
Debian (scripts/setup.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.console import step
from harness.errors import HarnessError, ToolMissing
from harness.paths import cache_dir
from harness.toolchain.build import GCFLAGS, _locked
from harness.toolchain.gocmd import go_binary, go_env, go_query, go_version, run_logged


@dataclass(frozen=True)
class ModuleTool:
    name: str
    module: str
    version: str
    package: str
    prepare: Callable[[Path], None] | None = None  # adjusts the downloaded source before the build


def _nerdctl_without_test_module(src: Path) -> None:
    """nerdctl's go.mod replaces its test module (mod/tigron) with ./mod/tigron, a directory the
    module zip leaves out (and the proxy here does not serve that module). The binary only
    names its `tig.T` type through a test helper, so a stand-in with that one interface is
    written there."""
    tig = src / "mod" / "tigron" / "tig"
    tig.mkdir(parents=True, exist_ok=True)
    (src / "mod" / "tigron" / "go.mod").write_text("module github.com/containerd/nerdctl/mod/tigron\n\ngo 1.23\n")
    (tig / "tig.go").write_text(
        "// Package tig is annotrace's stand-in for nerdctl's test module (see harness/toolchain/engines.py).\n"
        "package tig\n\ntype T interface {\n\tHelper()\n\tFailNow()\n\tLog(args ...any)\n}\n")


CRICTL = ModuleTool("crictl", "sigs.k8s.io/cri-tools", "v1.37.0", "./cmd/crictl")
NERDCTL = ModuleTool("nerdctl", "github.com/containerd/nerdctl/v2", "v2.1.3", "./cmd/nerdctl",
                     _nerdctl_without_test_module)


def build_module_tool(tool: ModuleTool) -> Path:
    """Build `tool` at its pinned version (cached by version and Go version)."""
    target = cache_dir() / "tools" / f"{tool.name}-{tool.version}-{go_version()}"
    binary = target / tool.name
    with _locked(cache_dir() / "locks" / f"{target.name}.lock"):
        if binary.is_file():
            return binary
        target.mkdir(parents=True, exist_ok=True)
        step(f"building {tool.name} {tool.version} from the Go module proxy")
        proc = go_query(["mod", "download", "-json", f"{tool.module}@{tool.version}"])
        try:
            source = Path(json.loads(proc.stdout)["Dir"])
        except (ValueError, KeyError) as exc:
            raise HarnessError(f"could not download {tool.module}@{tool.version} from the module proxy: "
                               f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}") from exc
        src = target / "src"
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(source, src)
        subprocess.run(["chmod", "-R", "u+w", str(src)], check=True)
        if tool.prepare is not None:
            tool.prepare(src)
        code = run_logged([go_binary(), "build", f"-gcflags={GCFLAGS}", "-o", str(binary), tool.package],
                          go_env(), src, target / "build.log", f"go build {tool.name}")
        if code != 0 or not binary.is_file():
            raise HarnessError(f"could not build {tool.name} {tool.version}; see {target / 'build.log'}")
        return binary


def podman_binary() -> Path:
    path = shutil.which("podman")
    if path is None:
        raise ToolMissing("podman", "install it with `apt-get install podman` or run scripts/setup.sh")
    return Path(path)


__all__ = ["CRICTL", "NERDCTL", "build_module_tool", "podman_binary"]
