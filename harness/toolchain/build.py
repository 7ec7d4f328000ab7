"""Build ctr, containerd and the runc shim from the module proxy with full debug info.

A build lives in <cache>/builds/<key>/ where the key covers every input (module,
version, patches, Go toolchain request, flags). A second call with the same
inputs finds build.json and the binaries it lists, checks their hashes, and
rebuilds nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import mmap
import platform
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.console import step
from harness.errors import HarnessError
from harness.paths import cache_dir
from harness.toolchain.gocmd import go_binary, go_env, go_json, go_version, run_logged
from harness.toolchain.resolve import ResolvedVersion, resolve_version
from harness.versions import build_tags, release_line

# Full debug info: no optimisation, no inlining. Never -s -w (they strip DWARF).
GCFLAGS = "all=-N -l"
BUILD_FORMAT = 1  # bump when the build procedure changes, so old cache entries are not reused

_NEEDS_GO = re.compile(r"requires go >= ?(\d+\.\d+(?:\.\d+)?)")


@dataclass
class Build:
    """A finished build: where its binaries are and how they were made."""

    directory: Path
    manifest: dict = field(default_factory=dict)
    reused: bool = False

    @property
    def bin_dir(self) -> Path:
        return self.directory / "bin"

    @property
    def src_dir(self) -> Path:
        return self.directory / "src"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def version(self) -> str:
        return self.manifest["resolved"]["version"]

    @property
    def module(self) -> str:
        return self.manifest["resolved"]["module"]

    def contract(self) -> dict:
        """The `containerd` section of the --json document."""
        return {
            "version": self.version,
            "module": self.module,
            "requested": self.manifest["resolved"]["requested"],
            "commit": self.manifest["resolved"]["commit"],
            "go": self.manifest["go"]["version"],
            "patches": [p["name"] for p in self.manifest["patches"]],
            "build_dir": str(self.directory),
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def has_dwarf(path: Path) -> bool:
    """True when the ELF binary still has DWARF sections (a crude but honest check)."""
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b".debug_info") != -1 or data.find(b".zdebug_info") != -1


def _build_key(resolved: ResolvedVersion, patches: list[dict], toolchain_request: str) -> str:
    inputs = {
        "format": BUILD_FORMAT,
        "module": resolved.module,
        "version": resolved.version,
        "patches": [p["sha256"] for p in patches],
        "toolchain": toolchain_request,
        "gcflags": GCFLAGS,
        "arch": platform.machine(),
    }
    if tags := build_tags(resolved.version):  # only when set, so keys of untagged builds stay stable
        inputs["tags"] = list(tags)
    material = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path):
    """Serialise builds of one cache entry across processes (tests run them side by side)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _describe_patches(patch_files: list[Path]) -> list[dict]:
    described = []
    for patch in patch_files:
        if not patch.exists():
            raise HarnessError(f"patch {patch} does not exist: give the path of a unified diff (see patches/)")
        if not patch.is_file():
            raise HarnessError(f"patch {patch} is not a file: give the path of a unified diff (see patches/)")
        described.append({"name": patch.name, "path": str(patch.resolve()), "sha256": sha256_file(patch)})
    return described


def _cached(directory: Path) -> Build | None:
    manifest_path = directory / "build.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        binaries = dict(manifest["binaries"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # a damaged manifest means: build again
    for name, digest in binaries.items():
        binary = directory / "bin" / name
        if not binary.is_file() or sha256_file(binary) != digest:
            return None
    return Build(directory, manifest, reused=True)


def _fetch_source(resolved: ResolvedVersion, src: Path, log: Path) -> None:
    step(f"downloading {resolved.module}@{resolved.version} from the module proxy")
    try:
        info = go_json(["mod", "download", "-json", f"{resolved.module}@{resolved.version}"])
    except subprocess.CalledProcessError as exc:
        raise HarnessError(f"go mod download {resolved.module}@{resolved.version} failed: {exc.stderr.strip()[-300:]}") from exc
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(info["Dir"], src)
    for path in [src, *src.rglob("*")]:  # the module cache is read-only; patches need to write
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    vendor = src / "vendor"
    if vendor.is_dir():
        # Module zips carry vendor/modules.txt but no vendored code: build from the proxy instead.
        shutil.rmtree(vendor)
    with log.open("a") as handle:
        handle.write(f"source: {info['Dir']}\n")


def _apply_patches(patches: list[dict], src: Path, resolved: ResolvedVersion, log: Path) -> None:
    for patch in patches:
        step(f"applying patch {patch['name']}")
        check = subprocess.run(
            ["git", "apply", "--check", "-p1", patch["path"]], cwd=src, capture_output=True, text=True
        )
        if check.returncode != 0:
            first = check.stderr.strip().splitlines()[0] if check.stderr.strip() else "unknown error"
            raise HarnessError(
                f"patch {patch['name']} does not apply to {resolved.module}@{resolved.version} ({first}): "
                "regenerate it against that version"
            )
        subprocess.run(["git", "apply", "-p1", patch["path"]], cwd=src, check=True, capture_output=True)
        with log.open("a") as handle:
            handle.write(f"applied patch {patch['name']} sha256={patch['sha256']}\n")


def _go_build(resolved: ResolvedVersion, src: Path, bin_dir: Path, toolchain: str, log: Path) -> int:
    layout = resolved.layout
    ldflags = " ".join(
        [
            f"-X {layout.version_pkg}.Version={resolved.version}",
            f"-X {layout.version_pkg}.Revision={resolved.commit}",
            f"-X {layout.version_pkg}.Package={resolved.module.removesuffix('/v2')}",
        ]
    )
    cmd = [go_binary(), "build", f"-gcflags={GCFLAGS}", f"-ldflags={ldflags}", "-o", str(bin_dir) + "/"]
    if tags := build_tags(resolved.version):
        cmd.append(f"-tags={','.join(tags)}")
    cmd += list(layout.commands.values())
    bin_dir.mkdir(parents=True, exist_ok=True)
    return run_logged(cmd, go_env(toolchain), src, log, f"go build ({toolchain})")


def _toolchains_to_try(resolved: ResolvedVersion, requested_toolchain: str, src: Path) -> list[str]:
    """The installed Go first; then what go.mod asks for; then the release line's known-good Go."""
    if requested_toolchain != "auto":
        return [requested_toolchain]
    candidates = ["local"]
    if not (src / "go.mod").is_file():
        raise HarnessError(f"containerd {resolved.version} has no go.mod (containerd became a Go module in v1.5): "
                           "it cannot be built from the module proxy; name v1.5 or newer")
    gomod = (src / "go.mod").read_text()
    if match := re.search(r"^toolchain (go\S+)", gomod, re.M):
        candidates.append(match.group(1))
    line = release_line(resolved.version)
    if line is not None:
        candidates.append(line.fallback_go)
    return list(dict.fromkeys(candidates))


def build_containerd(
    version: str,
    patch_files: list[Path] | None = None,
    toolchain: str = "auto",
    resolved: ResolvedVersion | None = None,
) -> Build:
    """Build (or reuse) containerd at `version` with `patch_files` applied."""
    resolved = resolved or resolve_version(version)
    patches = _describe_patches([Path(p) for p in patch_files or []])
    key = _build_key(resolved, patches, toolchain)
    short = resolved.module.rsplit("/", 1)[-1] if resolved.module.endswith("/v2") else "v1"
    directory = cache_dir() / "builds" / f"containerd-{resolved.version}-{short}-{key}"

    with _locked(cache_dir() / "locks" / f"{directory.name}.lock"):
        if (cached := _cached(directory)) is not None:
            step(f"containerd {resolved.version}: reusing build in {directory}")
            return cached
        directory.mkdir(parents=True, exist_ok=True)
        # The log lives beside the cache entry so it survives a failed build.
        log = cache_dir() / "logs" / f"{directory.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _build_into(directory, resolved, patches, toolchain, log)
        except BaseException:
            # Leave no half-built entry behind: a later call starts clean.
            shutil.rmtree(directory, ignore_errors=True)
            raise


def _build_into(directory: Path, resolved: ResolvedVersion, patches: list[dict], toolchain: str, log: Path) -> Build:
    log.write_text("")
    src, bin_dir = directory / "src", directory / "bin"
    started = time.monotonic()
    _fetch_source(resolved, src, log)
    _apply_patches(patches, src, resolved, log)

    attempts: list[dict] = []
    for candidate in _toolchains_to_try(resolved, toolchain, src):
        try:
            goversion = go_version(candidate)
        except HarnessError as exc:
            attempts.append({"toolchain": candidate, "error": str(exc)})
            continue
        step(f"building ctr, containerd, containerd-shim-runc-v2 {resolved.version} with {goversion} (-gcflags='{GCFLAGS}')")
        if _go_build(resolved, src, bin_dir, candidate, log) == 0:
            break
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        attempts.append({"toolchain": candidate, "go": goversion, "error": tail[0]})
        step(f"{goversion} could not build {resolved.version}; trying the next toolchain")
    else:
        raise HarnessError(
            f"containerd {resolved.version} did not build with any of "
            f"{[a['toolchain'] for a in attempts]}; see {log}"
        )

    binaries = {}
    for name in resolved.layout.commands:
        binary = bin_dir / name
        if not has_dwarf(binary):
            raise HarnessError(f"{binary} has no DWARF debug info; the build flags are wrong, see {log}")
        binaries[name] = sha256_file(binary)
    manifest = {
        "format": BUILD_FORMAT,
        "resolved": resolved.to_dict(),
        "go": {"toolchain": candidate, "version": goversion, "fallbacks": attempts},
        "flags": {"gcflags": GCFLAGS, "tags": list(build_tags(resolved.version)), "strip": False,
                  "env": {"GOFLAGS": "-mod=mod -buildvcs=false"}},
        "patches": patches,
        "binaries": binaries,
        "log": str(log),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
    }
    # Written last and atomically: its presence means the entry is complete.
    partial = directory / "build.json.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.replace(directory / "build.json")
    step(f"built containerd {resolved.version} in {manifest['seconds']}s -> {bin_dir}")
    return Build(directory, manifest, reused=False)
