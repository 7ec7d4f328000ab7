"""The one event schema every probe backend emits (delve today; gdb and gotrace later).

An event is one observation of one probed function in one process: a call (with
its arguments) or a return (with its return values and locals), the goroutine's
stack at that moment, and every place a sentinel value was seen in what was
loaded. Nothing downstream knows which backend produced it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1
KINDS = ("call", "return")
WHERE = ("argument", "local", "return")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int


@dataclass(frozen=True)
class Sighting:
    """A sentinel value found in a loaded variable."""

    value: str  # the sentinel value
    where: str  # argument | local | return
    path: str  # variable path, e.g. manifest.Annotations["com.test.foo"]


@dataclass
class Event:
    seq: int
    process: str  # ctr | containerd | ...
    kind: str  # call | return
    function: str
    file: str
    line: int
    goroutine: int
    stack: list[Frame]  # innermost first; stack[0] is `function` itself
    sightings: list[Sighting] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # paths that could not be read: unknown, not absent
    probe_pass: int = 1
    time: float = 0.0
    backend: str = "delve"
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Event:
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"event schema {data.get('schema')} is not {SCHEMA_VERSION}")
        data = dict(data)
        data["stack"] = [Frame(**f) for f in data["stack"]]
        data["sightings"] = [Sighting(**s) for s in data["sightings"]]
        return cls(**data)

    @property
    def caller_stack(self) -> tuple[str, ...]:
        """Function names of the callers, innermost first."""
        return tuple(frame.function for frame in self.stack[1:])

    def holds(self, value: str) -> list[Sighting]:
        return [s for s in self.sightings if s.value == value]


def relative_path(path: str, root: str) -> str:
    """A source path relative to the containerd source tree `root`, as every backend reports files."""
    if root and path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return path


def write_events(path: Path, events: list[Event]) -> None:
    with path.open("w") as handle:
        for event in events:
            handle.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")


def read_events(path: Path) -> list[Event]:
    with path.open() as handle:
        return [Event.from_json(json.loads(line)) for line in handle if line.strip()]
