"""Baselines: committed verdicts, one file per scenario and containerd version.

Layout: <dir>/<scenario>/<version>.json, each holding the verdict and the
command that recorded it (results/ holds only outputs of real runs).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.regress.verdict import RunVerdict

SCHEMA = "annotrace.baseline/1"


@dataclass(frozen=True)
class Baseline:
    path: Path
    verdict: RunVerdict
    command: str
    recorded: str


def write_baseline(directory: Path, verdict: RunVerdict, command: str, tools: dict | None = None) -> Path:
    if verdict.patches:
        raise HarnessError("a baseline is recorded from an unpatched build: drop --patch when writing baselines")
    path = directory / verdict.scenario / f"{verdict.version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "schema": SCHEMA,
        "command": command,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tools": tools or {},
        "verdict": verdict.to_dict(),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def load_baselines(directory: Path, versions: tuple[str, ...] = (), scenarios: tuple[str, ...] = ()) -> list[Baseline]:
    """Baselines under `directory`, optionally only some versions or scenarios; a clear error when none match."""
    if not directory.is_dir():
        raise HarnessError(f"baseline dir {directory} does not exist: give the dir that holds <scenario>/<version>.json "
                           f"(results/baselines/) or record one with `annotrace matrix --write-baselines DIR`")
    found = []
    for path in sorted(directory.glob("*/*.json")):
        try:
            document = json.loads(path.read_text())
            if document.get("schema") != SCHEMA:
                raise ValueError(f"schema is {document.get('schema')!r}, expected {SCHEMA!r}")
            verdict = RunVerdict.from_dict(document["verdict"])
        except (ValueError, KeyError, TypeError) as exc:
            raise HarnessError(f"baseline {path} cannot be read ({exc}): re-record it with "
                               f"`annotrace matrix --write-baselines`") from exc
        if versions and verdict.version not in versions:
            continue
        if scenarios and verdict.scenario not in scenarios:
            continue
        found.append(Baseline(path, verdict, document.get("command", ""), document.get("recorded", "")))
    if not found:
        wanted = ", ".join(filter(None, [" ".join(versions), " ".join(scenarios)])) or "any"
        raise HarnessError(f"no baseline in {directory} matches ({wanted}): list them with `ls {directory}/*/`")
    return found
