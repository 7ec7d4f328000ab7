"""Run one scenario on one containerd version and keep what a regression check needs.

Shared by matrix, check and bisect. A version that cannot be resolved or built,
or cannot do what the scenario asks, becomes a verdict with outcome `error` or
`unsupported` instead of ending the whole command; Ctrl-C still ends it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.console import step
from harness.errors import HarnessError
from harness.regress.verdict import RunVerdict, failed_verdict, run_verdict


@dataclass
class Evaluation:
    requested: str  # what the user named (v1.7, v2.1.4, main)
    verdict: RunVerdict
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    build_reused: bool | None = None  # None: no build happened (the version did not resolve)
    document: dict | None = field(default=None, repr=False)  # the run's --json document, when it ran

    @property
    def results_dir(self) -> str | None:
        return self.document["results_dir"] if self.document else None

    def timing(self) -> dict:
        return {"build_seconds": round(self.build_seconds, 1), "run_seconds": round(self.run_seconds, 1),
                "build_reused": self.build_reused}


def evaluate(scenario, requested: str, backend: str = "delve", patches: tuple[Path, ...] = (),
             max_passes: int = 8) -> Evaluation:
    """Build (cached) and run `scenario` on containerd `requested`; never raises HarnessError."""
    from harness.pipeline import RunOptions, run_scenario
    from harness.toolchain import build_containerd
    from harness.toolchain.resolve import resolve_version

    patch_names = tuple(p.name for p in patches)
    module = ""
    version = requested
    started = time.monotonic()
    try:
        resolved = resolve_version(requested)
        module, version = resolved.module, resolved.version
        step(f"{scenario.name} on containerd {version} ({requested}): build")
        build = build_containerd(version, list(patches))
    except HarnessError as exc:
        return Evaluation(requested, failed_verdict(scenario.name, version, module, backend, exc, patch_names),
                          build_seconds=time.monotonic() - started)
    build_seconds = time.monotonic() - started
    started = time.monotonic()
    step(f"{scenario.name} on containerd {version}: run ({backend})")
    options = RunOptions(version=version, patches=patches, backend=backend, max_passes=max_passes, transcript=False)
    try:
        document = run_scenario(scenario, options)
    except HarnessError as exc:
        return Evaluation(requested, failed_verdict(scenario.name, version, module, backend, exc, patch_names),
                          build_seconds, time.monotonic() - started, build.reused)
    return Evaluation(requested, run_verdict(document), build_seconds, time.monotonic() - started, build.reused,
                      document)
