"""The instrumented build: containerd's source with the plan's functions rewritten, built like the plain one.

The plain build's source tree (already patched) is copied, the `instrument` helper
(harness/probes/gotrace/tools/cmd/instrument, an AST-driven rewriter) rewrites the functions of
the probe plan in place and adds the `annotraceprobe` package, and the go command builds
it with the plain build's flags and toolchain. The result is cached beside the plain
build, keyed by the plain build, the plan and the helper's sources. Instrumented sources
exist only in the cache; nothing generated is committed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

from harness.console import step, warn
from harness.errors import HarnessError
from harness.paths import cache_dir
from harness.probes.plan import PROCESSES, ResolvedPlan
from harness.toolchain.build import Build, _cached, _go_build, _locked, has_dwarf, sha256_file
from harness.toolchain.resolve import ResolvedVersion

GO_SOURCE = Path(__file__).resolve().parent / "tools"
PROBE_SOURCE = GO_SOURCE / "probe" / "probe.go"
MAINS = ("cmd/ctr", "cmd/containerd")


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in GO_SOURCE.rglob("*") if p.is_file() and p.suffix in (".go", ".mod", ".sum")):
        digest.update(str(path.relative_to(GO_SOURCE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def instrumented_functions(plan: ResolvedPlan) -> list[str]:
    return sorted({f for process in PROCESSES for f in plan.functions[process]})


def build_instrumented(build: Build, plan: ResolvedPlan) -> Build:
    """The plain `build` with the plan's functions instrumented (cached)."""
    from harness.toolchain.tools import build_go_tool

    functions = instrumented_functions(plan)
    key = hashlib.sha256(json.dumps([build.directory.name, functions, _sources_digest()]).encode()).hexdigest()[:12]
    directory = cache_dir() / "builds" / f"{build.directory.name}-gotrace-{key}"
    with _locked(cache_dir() / "locks" / f"{directory.name}.lock"):
        if (cached := _cached(directory)) is not None:
            step(f"gotrace: reusing the instrumented build in {directory}")
            return cached
        instrument = build_go_tool("gotrace", GO_SOURCE, "./cmd/instrument")
        shutil.rmtree(directory, ignore_errors=True)  # an incomplete entry: start clean
        directory.mkdir(parents=True)
        try:
            return _build_into(directory, build, functions, instrument)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise


def _build_into(directory: Path, build: Build, functions: list[str], instrument: Path) -> Build:
    started = time.monotonic()
    log = cache_dir() / "logs" / f"{directory.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    src, bin_dir = directory / "src", directory / "bin"
    step(f"gotrace: instrumenting {len(functions)} functions in a copy of containerd {build.version}")
    shutil.copytree(build.src_dir, src, symlinks=True)
    plan_file = directory / "plan.json"
    plan_file.write_text(json.dumps({"functions": functions, "mains": list(MAINS)}, indent=2) + "\n")
    proc = subprocess.run([str(instrument), "-src", str(src), "-module", build.module, "-plan", str(plan_file),
                           "-probe", str(PROBE_SOURCE)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"gotrace: instrumenting containerd {build.version} failed: "
                           f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    report = json.loads(proc.stdout)
    (directory / "instrument.json").write_text(json.dumps(report, indent=2) + "\n")
    if report.get("missing"):
        missing = ", ".join(m["function"].rsplit("/", 1)[-1] for m in report["missing"])
        warn(f"gotrace: not instrumented (their events will be missing): {missing}")
    resolved = ResolvedVersion(**build.manifest["resolved"])
    toolchain = build.manifest["go"]["toolchain"]
    step(f"gotrace: building the instrumented containerd {build.version}")
    if _go_build(resolved, src, bin_dir, toolchain, log) != 0:
        tail = (log.read_text().strip().splitlines() or ["no output"])[-1]
        raise HarnessError(f"gotrace: the instrumented containerd {build.version} did not build ({tail}); see {log}")
    binaries = {}
    for name in resolved.layout.commands:
        if not has_dwarf(bin_dir / name):
            raise HarnessError(f"{bin_dir / name} has no DWARF debug info; see {log}")
        binaries[name] = sha256_file(bin_dir / name)
    manifest = dict(build.manifest)
    manifest.update(
        binaries=binaries,
        log=str(log),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds=round(time.monotonic() - started, 1),
        instrumented={"from": str(build.directory), "functions": functions, "report": report,
                      "build_seconds": round(time.monotonic() - started, 1)},
    )
    partial = directory / "build.json.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.replace(directory / "build.json")
    step(f"gotrace: built the instrumented containerd {build.version} in {manifest['seconds']}s -> {bin_dir}")
    return Build(directory, manifest, reused=False)


__all__ = ["build_instrumented", "instrumented_functions"]
