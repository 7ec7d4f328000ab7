"""Translate what delve loaded (api.Variable trees, breakpoint hits) into events.

Variable paths are written the way a Go programmer would:
manifest.Annotations["com.test.foo"], req.Container.Spec.Value (bytes). A function
value shows the variables its closure captured (delve reads the closure struct), so a
value travelling inside an option closure is seen under the closure's name:
opts[5]{pkg/oci.WithAnnotations.func1}.annotations["k"]. A value delve could not read
in full is an Unreadable record, never "absent"; a string or []byte cut short is
marked with where it lives in memory, so the collector can read it in full while the
target is still stopped (see backend.read_cut_values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.probes.events import TEXT_CONTAINERS, Event, Frame, Sighting, Unreadable, relative_path
from harness.probes.matching import SentinelMatcher

KIND_ARRAY = 17
KIND_FUNC = 19
KIND_INTERFACE = 20
KIND_MAP = 21
KIND_POINTER = 22
KIND_SLICE = 23
KIND_STRING = 24
KIND_STRUCT = 25
FLAG_RETURN_ARGUMENT = 16  # api.VariableReturnArgument
_TEXTUAL = (KIND_STRING, KIND_STRUCT, KIND_MAP, KIND_POINTER, KIND_INTERFACE, KIND_FUNC)  # elements that can hold text
# A cut string or []byte longer than this is not read again: it stays unknown (too large).
MEMORY_LIMIT = 1 << 20
_CLOSURE = re.compile(r"\.func\d+(\.\d+)*$")



def is_closure(function: str) -> bool:
    """A function literal: F.func1, F.func1.2, (*T).M.func3."""
    return bool(_CLOSURE.search(function))


def looks_like_json(byte_children: list[dict]) -> bool:
    """Whether loaded []byte elements start (after whitespace) like marshalled JSON."""
    for child in byte_children:
        value = int(child.get("value") or 0)
        if value not in (9, 10, 13, 32):
            return value in (0x7B, 0x5B)  # '{' or '['
    return False


def looks_like_text(data: bytes) -> bool:
    """Mostly printable: JSON, text, or a protobuf message that wraps text (a typeurl Any)."""
    if not data:
        return False
    printable = sum(1 for b in data if 32 <= b < 127 or b in (9, 10, 13))
    return printable * 10 >= len(data) * 6


@dataclass
class Leaf:
    """A string-like leaf of a loaded variable: its text, or why it could not be read."""

    path: str
    text: str | None
    closures: tuple[str, ...] = ()
    cut: Unreadable | None = None  # set when the text is only a prefix (or nothing) of the value
    address: int = 0  # for a cut string or []byte: where its data lives, for a memory read
    length: int = 0
    vtype: str = ""  # for a cut map, slice or closure: its type and address, to load it again deeper
    vaddr: int = 0

    @property
    def reloadable(self) -> bool:
        """A cut container that can hold text and is worth loading again (a closure's, or text-typed)."""
        if self.cut is None or self.cut.content not in ("map", "slice", "closure") or not self.vaddr:
            return False
        return "{" in self.path or self.cut.content == "closure" or self.vtype in TEXT_CONTAINERS


def _element_can_hold_text(vtype: str) -> bool:
    """[]T whose elements may hold text (strings, functions, maps, structs), not numbers."""
    element = vtype.split("]", 1)[1] if vtype.startswith("[") and "]" in vtype else ""
    return bool(element) and element not in ("int", "int32", "int64", "uint32", "uint64", "uint8", "byte", "bool",
                                            "float64", "uintptr")


def _byte_text(children: list[dict]) -> bytes:
    return bytes(int(c.get("value") or 0) & 0xFF for c in children)


def leaves(variable: dict, path: str, where: str = "argument", closures: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every string-like leaf of a loaded variable."""
    if variable.get("unreadable"):
        yield Leaf(path, None, closures, Unreadable(where, path, "error", detail=str(variable.get("unreadable"))[:120],
                                                    vtype=variable.get("type", "")))
        return
    kind = variable.get("kind")
    children = variable.get("children") or []
    vtype = variable.get("type", "")
    length = variable.get("len", 0) or 0
    if kind == KIND_STRING:
        text = variable.get("value", "")
        loaded = len(text.encode())
        if length > loaded:
            yield Leaf(path, text, closures, Unreadable(where, path, "truncated", "text", loaded, length),
                       int(variable.get("base") or 0), length)
        else:
            yield Leaf(path, text, closures)
    elif kind in (KIND_SLICE, KIND_ARRAY) and vtype.rsplit("]", 1)[-1] in ("uint8", "byte"):
        data = _byte_text(children)
        label = f"{path} (bytes)"
        if length > len(children):
            # Marshalled JSON and other text is worth reading in full; binary data (bbolt pages) is not.
            content = "json-bytes" if looks_like_json(children) else "bytes" if not looks_like_text(data) else "text"
            yield Leaf(label, data.decode(errors="replace"), closures,
                       Unreadable(where, label, "truncated", content, len(children), length),
                       int(variable.get("base") or 0) if kind == KIND_SLICE else int(variable.get("addr") or 0),
                       length)
        else:
            yield Leaf(label, data.decode(errors="replace"), closures)
    elif kind == KIND_MAP:
        if length > len(children) // 2:
            yield Leaf(path, None, closures,
                       Unreadable(where, path, "truncated", "map", len(children) // 2, length, vtype=vtype),
                       vtype=vtype, vaddr=int(variable.get("addr") or 0))
        for index in range(0, len(children) - 1, 2):
            key, value = children[index], children[index + 1]
            key_text = key.get("value", "") if key.get("kind") == KIND_STRING else f"#{index // 2}"
            yield Leaf(f"{path}[{json.dumps(key_text)}] (key)", key_text, closures)
            yield from leaves(value, f"{path}[{json.dumps(key_text)}]", where, closures)
    elif kind in (KIND_SLICE, KIND_ARRAY):
        if length > len(children) and (any(c.get("kind") in _TEXTUAL for c in children[:1]) or
                                       (not children and _element_can_hold_text(vtype))):
            yield Leaf(path, None, closures,
                       Unreadable(where, path, "truncated", "slice", len(children), length, vtype=vtype),
                       vtype=vtype, vaddr=int(variable.get("addr") or 0))
        for index, child in enumerate(children):
            yield from leaves(child, f"{path}[{index}]", where, closures)
    elif kind == KIND_STRUCT:
        for child in children:
            yield from leaves(child, f"{path}.{child.get('name', '?')}", where, closures)
    elif kind == KIND_FUNC:
        # A closure: its children are the variables it captured.
        function = variable.get("value") or ""
        if children and function:
            inner = (*closures, function)
            for child in children:
                yield from leaves(child, f"{path}{{{function}}}.{child.get('name', '?')}", where, inner)
        elif function and length > 0:  # captured variables beyond the load depth
            yield Leaf(f"{path}{{{function}}}", None, (*closures, function),
                       Unreadable(where, f"{path}{{{function}}}", "truncated", "closure", 0, length, function, vtype),
                       vtype=vtype, vaddr=int(variable.get("addr") or 0))
    elif kind in (KIND_POINTER, KIND_INTERFACE):
        for child in children:  # the pointee / the dynamic value keeps the same path
            yield from leaves(child, path, where, closures)


@dataclass
class Scan:
    """What was found in a set of variables."""

    sightings: list[Sighting] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    cut: list[Leaf] = field(default_factory=list)  # cut text that a memory read can complete
    reload: list[Leaf] = field(default_factory=list)  # cut containers that a deeper load can complete


def scan(variables: list[dict], where: str, matcher: SentinelMatcher, prefix: str = "",
         closures: tuple[str, ...] = ()) -> Scan:
    """Sightings and cut values in `variables` (`prefix`: the path of a value loaded again on its own)."""
    found = Scan()
    for variable in variables:
        name = prefix or variable.get("name") or "?"
        for leaf in leaves(variable, name, where, closures):
            if leaf.text:
                for match in matcher.find(leaf.text):
                    if leaf.cut is not None and match.kind == "fragment":
                        continue  # the cut itself may end mid-value; the full read decides
                    found.sightings.append(Sighting(match.value, where, leaf.path, match.kind, match.text,
                                                    leaf.closures))
            if leaf.cut is not None:
                found.unreadable.append(leaf.cut)
                if leaf.address and leaf.cut.content != "bytes" and leaf.length <= MEMORY_LIMIT:
                    found.cut.append(leaf)
                elif leaf.reloadable:
                    found.reload.append(leaf)
    found.sightings = list(dict.fromkeys(found.sightings))  # a map key and its value may both match
    return found


def find_sightings(variables: list[dict], where: str, sentinels: list[str]) -> tuple[list[Sighting], list[Unreadable]]:
    """Exact sightings and unreadable records in `variables` (for callers without a matcher)."""
    found = scan(variables, where, SentinelMatcher(sentinels))
    return found.sightings, found.unreadable


def _frames(stacktrace: list[dict]) -> list[Frame]:
    frames = []
    for frame in stacktrace:
        function = (frame.get("function") or {}).get("name", "?")
        frames.append(Frame(function, frame.get("file", ""), frame.get("line", 0)))
    return frames


def thread_scans(thread: dict, matcher: SentinelMatcher) -> tuple[bool, list[Scan], list[str], list[str]]:
    """(returning, scans, result types, captured names) of one stopped thread at a tracepoint."""
    breakpoint = thread.get("breakPoint") or {}
    info = thread.get("breakPointInfo") or {}
    returning = bool(breakpoint.get("traceReturn"))
    arguments = info.get("arguments") or []
    # Result parameters (~r0, named results) are garbage at entry; at a return they are the results.
    params = [a for a in arguments if not (a.get("flags", 0) & FLAG_RETURN_ARGUMENT)]
    results = [a for a in arguments if a.get("flags", 0) & FLAG_RETURN_ARGUMENT]
    if returning and thread.get("ReturnValues"):
        results = thread["ReturnValues"]
    scans = [scan(params, "argument", matcher)]
    captured: list[str] = []
    types: list[str] = []
    if returning:
        scans.append(scan(results, "return", matcher))
        locals_ = info.get("locals") or []
        function = (thread.get("function") or {}).get("name", "")
        if is_closure(function) and arguments:
            # A closure's captured variables are declared on or before its func literal's line (its
            # parameters' line); those captured by reference escaped to the heap (delve flag 1) and
            # are the enclosing function's own variables: writing them is an output.
            line = max(a.get("DeclLine", 0) for a in arguments)
            by_value = [v for v in locals_ if v.get("DeclLine", 0) < line]
            by_reference = [v for v in locals_ if v.get("DeclLine", 0) == line and v.get("flags", 0) & 1]
            captured = [v.get("name", "?") for v in by_reference]
            scans.append(scan(by_value, "captured", matcher))
            locals_ = [v for v in locals_ if v not in by_value]
        scans.append(scan(locals_, "local", matcher))
        types = [r.get("type", "") for r in results]
    return returning, scans, types, captured


def thread_to_event(thread: dict, process: str, seq: int, sentinels: list[str] | SentinelMatcher, probe_pass: int,
                    when: float, source_root: str = "", complete=None) -> Event:
    """One stopped thread at a tracepoint -> one event.

    `complete(scans)`, when given, runs before the event is made: the collector reads cut text in
    full there, while the target is still stopped."""
    matcher = sentinels if isinstance(sentinels, SentinelMatcher) else SentinelMatcher(sentinels)
    returning, scans, types, captured = thread_scans(thread, matcher)
    if complete is not None:
        complete(scans)
    info = thread.get("breakPointInfo") or {}
    stack = _frames(info.get("stacktrace") or [])
    function = (thread.get("function") or {}).get("name") or (stack[0].function if stack else "?")
    if source_root:
        stack = [Frame(f.function, relative_path(f.file, source_root), f.line) for f in stack]
    return Event(
        seq=seq,
        process=process,
        kind="return" if returning else "call",
        function=function,
        file=relative_path(thread.get("file", ""), source_root),
        line=thread.get("line", 0),
        goroutine=thread.get("goroutineID", 0),
        stack=stack,
        sightings=list(dict.fromkeys(s for found in scans for s in found.sightings)),
        unreadable=[u for found in scans for u in found.unreadable],
        result_types=types,
        captured=captured,
        probe_pass=probe_pass,
        time=when,
    )
