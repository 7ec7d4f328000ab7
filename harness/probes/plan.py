"""Probe plans: which functions to watch in which process.

A plan is a list of regexes per process. The default comes from the version table
(harness/versions.py); a scenario may add patterns ([probes] in its TOML); the
command line adds more with --probe [PROCESS:]REGEX. Patterns are resolved against
the real function names of the built binaries; a pattern that matches nothing is
an error that suggests near names.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.probes.processes import PROCESSES
from harness.toolchain.gocmd import go_binary
from harness.versions import Layout



@dataclass
class ProbePlan:
    patterns: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PROCESSES})

    def add(self, process: str, pattern: str) -> None:
        if process not in PROCESSES:
            raise HarnessError(f"unknown process {process!r} in probe {pattern!r}: use one of {', '.join(PROCESSES)}")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise HarnessError(f"probe pattern {pattern!r} is not a valid regex ({exc}); fix it") from exc
        if pattern not in self.patterns[process]:
            self.patterns[process].append(pattern)


@dataclass
class ResolvedPlan:
    functions: dict[str, list[str]]  # process -> exact function names
    patterns: dict[str, list[str]]

    def to_dict(self) -> dict:
        return {"patterns": self.patterns, "functions": self.functions}

    def count(self) -> int:
        return sum(len(f) for f in self.functions.values())


PLANS = ("default", "empty")


def default_plan(layout: Layout) -> ProbePlan:
    """The version table's plan: the image, content, spec, container, task, bundle and shim code."""
    return _plan(layout.probes)


def empty_plan(layout: Layout) -> ProbePlan:
    """Only where each source enters each process and the runtime sink; refinement finds the rest."""
    return _plan(layout.entries)


def named_plan(name: str, layout: Layout) -> ProbePlan:
    if name not in PLANS:
        raise HarnessError(f"unknown plan {name!r}: use one of {', '.join(PLANS)}")
    return default_plan(layout) if name == "default" else empty_plan(layout)


def _plan(patterns_by_process: dict[str, tuple[str, ...]]) -> ProbePlan:
    plan = ProbePlan()
    for process, patterns in patterns_by_process.items():
        for pattern in patterns:
            plan.add(process, pattern)
    return plan


def parse_probe_option(plan: ProbePlan, option: str) -> None:
    """--probe PROCESS:REGEX (ctr, containerd, containerd-shim-runc-v2), or --probe REGEX (every process)."""
    process, _, pattern = option.partition(":")
    if pattern and process in PROCESSES:
        plan.add(process, pattern)
    else:
        for process in PROCESSES:
            plan.add(process, option)


def binary_functions(binary: Path) -> list[str]:
    """Function symbols of a Go binary (go tool nm), cached beside the binary."""
    cache = binary.parent / f".{binary.name}.functions"
    if cache.is_file() and cache.stat().st_mtime >= binary.stat().st_mtime:
        return cache.read_text().splitlines()
    proc = subprocess.run([go_binary(), "tool", "nm", str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"cannot list the functions of {binary}: {proc.stderr.strip()[:200]}")
    names = sorted({parts[2] for line in proc.stdout.splitlines() if len(parts := line.split()) >= 3
                    and parts[1] in ("T", "t")})
    cache.write_text("\n".join(names) + "\n")
    return names


def near_names(pattern: str, functions: list[str], limit: int = 3) -> list[str]:
    """Suggestions for a pattern that matched nothing: close names by their last element."""
    literal = re.sub(r"\\(.)", r"\1", pattern).strip("^$")
    tail = literal.rsplit("/", 1)[-1]
    by_tail = {f.rsplit("/", 1)[-1]: f for f in functions}
    close = difflib.get_close_matches(tail, list(by_tail), n=limit, cutoff=0.6)
    return [by_tail[c] for c in close]


def resolve_plan(plan: ProbePlan, functions_by_process: dict[str, list[str]],
                 required: dict[str, set[str]] | None = None) -> ResolvedPlan:
    """Match every pattern. A pattern must match in at least one process it was given for."""
    resolved: dict[str, list[str]] = {p: [] for p in PROCESSES}
    matched_anywhere: dict[str, bool] = {}
    for process, patterns in plan.patterns.items():
        names = functions_by_process.get(process, [])
        for pattern in patterns:
            regex = re.compile(pattern)
            hits = [name for name in names if regex.search(name)]
            matched_anywhere[pattern] = matched_anywhere.get(pattern, False) or bool(hits)
            resolved[process].extend(h for h in hits if h not in resolved[process])
    for pattern, matched in matched_anywhere.items():
        if not matched:
            everything = sorted({f for names in functions_by_process.values() for f in names})
            suggestions = near_names(pattern, everything)
            hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else "; check the name against this containerd version"
            raise HarnessError(f"probe pattern {pattern!r} matches no function in the built binaries{hint}")
    return ResolvedPlan({p: sorted(f) for p, f in resolved.items()}, {p: list(v) for p, v in plan.patterns.items()})
