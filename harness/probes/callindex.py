"""Static callees of functions in a built binary, from its disassembly (`go tool objdump`).

What a function calls directly, and the closures it builds (a closure is referenced by
address, LEAQ F.func1, before anything calls it). Refinement asks for many functions at
once, so one objdump run answers a batch; answers are kept beside the binary
(`.<binary>.callees.json`), so later runs on the same build disassemble nothing again.
Interface calls and calls through function values are not static: refinement finds
those on the stacks it observes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.errors import HarnessError

_TEXT = re.compile(r"^TEXT (\S+)\(SB\)")
_TARGET = re.compile(r"\b(?:CALL|LEAQ)\s+(\S+?)(?:·f)?\(SB\)")
BATCH = 150  # functions per objdump run (one regex alternation)


class CallIndex:
    """`callees(process, function)` for the binaries of one build."""

    def __init__(self, binaries: dict[str, Path]) -> None:
        self.binaries = binaries
        self._cache: dict[str, dict[str, list[str]]] = {}

    def _file(self, process: str) -> Path:
        binary = self.binaries[process]
        return binary.parent / f".{binary.name}.callees.json"

    def _known(self, process: str) -> dict[str, list[str]]:
        if process not in self._cache:
            path = self._file(process)
            binary = self.binaries[process]
            known: dict[str, list[str]] = {}
            if path.is_file() and path.stat().st_mtime >= binary.stat().st_mtime:
                try:
                    known = json.loads(path.read_text())
                except (json.JSONDecodeError, OSError):
                    known = {}
            self._cache[process] = known
        return self._cache[process]

    def callees(self, process: str, function: str) -> list[str]:
        return self.callees_many(process, [function])[function]

    def callees_many(self, process: str, functions: list[str]) -> dict[str, list[str]]:
        known = self._known(process)
        missing = [f for f in dict.fromkeys(functions) if f not in known]
        for start in range(0, len(missing), BATCH):
            batch = missing[start:start + BATCH]
            found = objdump_callees(self.binaries[process], batch)
            for function in batch:
                known[function] = found.get(function, [])
        if missing:
            try:
                self._file(process).write_text(json.dumps(known))
            except OSError:
                pass  # a read-only cache only costs time
        return {f: known[f] for f in functions}

    def reachable(self, process: str, functions: list[str], depth: int) -> dict[str, int]:
        """Every function reachable from `functions` in at most `depth` static calls, with its distance."""
        distance: dict[str, int] = {}
        frontier = list(dict.fromkeys(functions))
        for level in range(1, depth + 1):
            answers = self.callees_many(process, frontier)
            frontier = []
            for callees in answers.values():
                for callee in callees:
                    if callee not in distance and callee not in functions:
                        distance[callee] = level
                        frontier.append(callee)
            frontier = [f for f in frontier if not f.startswith("runtime.")]
            if not frontier:
                break
        return distance


def objdump_callees(binary: Path, functions: list[str]) -> dict[str, list[str]]:
    """Functions each of `functions` calls directly or makes closures of, in the order they appear."""
    from harness.toolchain.gocmd import go_query

    if not functions:
        return {}
    pattern = "^(" + "|".join(re.escape(f) for f in functions) + ")$"
    proc = go_query(["tool", "objdump", "-s", pattern, str(binary)])
    if proc.returncode != 0:
        raise HarnessError(f"go tool objdump failed on {binary}: {proc.stderr.strip()[:200]}")
    found: dict[str, dict[str, None]] = {}
    current = None
    for line in proc.stdout.splitlines():
        if match := _TEXT.match(line):
            current = match.group(1)
            found.setdefault(current, {})
        elif current is not None and (target := _TARGET.search(line)):
            name = target.group(1)
            if name != current and not name.startswith("runtime."):
                found[current][name] = None
    return {f: list(callees) for f, callees in found.items()}
