"""The one event schema every probe backend emits (delve, gdb, gotrace).

An event is one observation of one probed function in one process: a call (with
its arguments, and for a closure the variables it captured) or a return (with its
arguments, locals and return values), the goroutine's stack at that moment, every
place a sentinel value was seen in what was loaded (exactly, or changed), and every
value that could not be read in full. Nothing downstream knows which backend
produced it.

Schema 2 (this one) made unreadable values typed records and added variant
sightings, captured variables and result types; schema 1 files are refused with a
line that says to re-record them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2
KINDS = ("call", "return")
WHERE = ("argument", "local", "return", "captured")  # captured: a closure's variable captured by value
MATCHES = ("exact", "case", "fragment", "base64", "hex")
# Why a value could not be read in full.
REASONS = ("truncated", "too-large", "budget", "error", "unsupported")
# What it was: text and JSON bytes may hide a sentinel; binary bytes (bbolt pages, tar streams) are
# kept apart because they are big and are read in full only when small enough.
CONTENTS = ("text", "json-bytes", "bytes", "map", "slice", "struct", "interface", "value")
# Containers that hold text directly.
TEXT_CONTAINERS = ("map[string]string", "[]string", "map[string][]string")
# Result types that carry status, not data: a function returning only these produced no data output.
STATUS_TYPES = ("error", "bool", "int", "int32", "int64", "uint32", "uint64", "uintptr")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int


@dataclass(frozen=True)
class Sighting:
    """A sentinel value found in a loaded variable, exactly or changed (a variant)."""

    value: str  # the sentinel value
    where: str  # argument | local | return | captured (a closure's variable captured by value, at return)
    path: str  # variable path, e.g. manifest.Annotations["com.test.foo"]
    match: str = "exact"  # exact | case | fragment | base64 | hex
    text: str = ""  # for a variant: the text the changed value was found in (cut)
    closures: tuple[str, ...] = ()  # function values on the path (a closure that captured the value)

    @property
    def exact(self) -> bool:
        return self.match == "exact"


@dataclass(frozen=True)
class Unreadable:
    """A value that could not be read in full: unknown, never absent."""

    where: str  # argument | local | return | captured
    path: str
    reason: str  # truncated | too-large | budget | error | unsupported
    content: str = "value"  # text | json-bytes | bytes | map | slice | struct | interface | value
    loaded: int | None = None  # how much was read (elements, bytes)
    length: int | None = None  # how much there was, when known
    detail: str = ""  # the debugger's error; for a closure, its function
    vtype: str = ""  # the Go type, when known

    @property
    def may_hide_text(self) -> bool:
        """Whether a sentinel may hide in it: text, JSON bytes, a closure, a container of text or of
        functions. Binary bytes cut short (bbolt pages, tar streams) do not count, nor do maps and
        slices of pointers, structs or interfaces cut by the load depth (connections, contexts)."""
        if self.content == "bytes":
            return False
        if self.content in ("map", "slice") and self.vtype:
            if self.vtype in TEXT_CONTAINERS:
                return True
            element = self.vtype[2:] if self.vtype.startswith("[]") else ""
            # Function values (functional options by Go's naming: ...Opt, ...Opts, ...Option) carry
            # what their closures captured.
            return element.startswith("func") or re.search(r"\.\w*(Opts?|Option)$", element) is not None
        return True

    def describe(self) -> str:
        size = f" at {self.loaded}" if self.loaded is not None else ""
        of = f" of {self.length}" if self.length is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.where} {self.path} ({self.content}, {self.reason}{size}{of}{detail})"


@dataclass
class Event:
    seq: int
    process: str  # ctr | containerd | containerd-shim-runc-v2 | ...
    kind: str  # call | return
    function: str
    file: str
    line: int
    goroutine: int
    stack: list[Frame]  # innermost first; stack[0] is `function` itself
    sightings: list[Sighting] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    result_types: list[str] = field(default_factory=list)  # at a return: the type of each result
    captured: list[str] = field(default_factory=list)  # at a closure's return: variables it captured by reference
    probe_pass: int = 1
    time: float = 0.0
    backend: str = "delve"
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Event:
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"event schema {data.get('schema')} is not {SCHEMA_VERSION}: "
                             "record the run again with this version of annotrace")
        data = dict(data)
        data["stack"] = [Frame(**f) for f in data["stack"]]
        data["sightings"] = [Sighting(**{**s, "closures": tuple(s.get("closures") or ())}) for s in data["sightings"]]
        data["unreadable"] = [Unreadable(**u) for u in data["unreadable"]]
        return cls(**data)

    @property
    def caller_stack(self) -> tuple[str, ...]:
        """Function names of the callers, innermost first."""
        return tuple(frame.function for frame in self.stack[1:])

    def holds(self, value: str) -> list[Sighting]:
        """Where the exact value was seen."""
        return [s for s in self.sightings if s.value == value and s.match == "exact"]

    def variants(self, value: str) -> list[Sighting]:
        """Where a changed form of the value was seen."""
        return [s for s in self.sightings if s.value == value and s.match != "exact"]

    @property
    def returns_data(self) -> bool:
        """At a return: whether any result can carry data (not only an error, a bool or a number)."""
        return any(t not in STATUS_TYPES for t in self.result_types)


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
