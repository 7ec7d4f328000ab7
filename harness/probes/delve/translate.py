"""Translate what delve loaded (api.Variable trees, breakpoint hits) into events.

Variable paths are written the way a Go programmer would:
manifest.Annotations["com.test.foo"], req.Container.Spec.Value (bytes). A value
delve could not read is recorded as unreadable, never as "absent".
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from harness.probes.events import Event, Frame, Sighting, relative_path

KIND_INTERFACE = 20
KIND_MAP = 21
KIND_POINTER = 22
KIND_SLICE = 23
KIND_STRING = 24
KIND_STRUCT = 25
KIND_ARRAY = 17
FLAG_RETURN_ARGUMENT = 16  # api.VariableReturnArgument
_TEXTUAL = (KIND_STRING, KIND_STRUCT, KIND_MAP, KIND_POINTER, KIND_INTERFACE)  # element kinds that can hold text



def looks_like_json(byte_children: list[dict]) -> bool:
    """Whether loaded []byte elements start (after whitespace) like marshalled JSON."""
    for child in byte_children:
        value = int(child.get("value") or 0)
        if value not in (9, 10, 13, 32):
            return value in (0x7B, 0x5B)  # '{' or '['
    return False


def leaves(variable: dict, path: str) -> Iterator[tuple[str, str | None]]:
    """(path, text) for every string-like leaf; text None means unreadable."""
    if variable.get("unreadable"):
        yield path, None
        return
    kind = variable.get("kind")
    children = variable.get("children") or []
    vtype = variable.get("type", "")
    if kind == KIND_STRING:
        text = variable.get("value", "")
        yield path, text
        if variable.get("len", 0) > len(text.encode()):
            yield f"{path} (truncated at {len(text)})", None
    elif kind in (KIND_SLICE, KIND_ARRAY) and vtype.rsplit("]", 1)[-1] in ("uint8", "byte"):
        # Marshalled JSON (the spec travels as bytes) is searched as text.
        data = bytes(int(c.get("value") or 0) & 0xFF for c in children)
        yield f"{path} (bytes)", data.decode(errors="replace")
        if variable.get("len", 0) > len(children):
            # Marshalled JSON is worth loading in full; binary data (bbolt pages) is not.
            kind_note = "json bytes" if looks_like_json(children) else "bytes"
            yield f"{path} ({kind_note}, truncated at {len(children)})", None
    elif kind == KIND_MAP:
        if variable.get("len", 0) > len(children) // 2:
            yield f"{path} (map, truncated at {len(children) // 2})", None
        for index in range(0, len(children) - 1, 2):
            key, value = children[index], children[index + 1]
            key_text = key.get("value", "") if key.get("kind") == KIND_STRING else f"#{index // 2}"
            yield f"{path}[{json.dumps(key_text)}] (key)", key_text
            yield from leaves(value, f"{path}[{json.dumps(key_text)}]")
    elif kind in (KIND_SLICE, KIND_ARRAY):
        if variable.get("len", 0) > len(children) and any(c.get("kind") in _TEXTUAL for c in children[:1]):
            yield f"{path} (slice, truncated at {len(children)})", None  # more strings/structs than loaded
        for index, child in enumerate(children):
            yield from leaves(child, f"{path}[{index}]")
    elif kind == KIND_STRUCT:
        for child in children:
            yield from leaves(child, f"{path}.{child.get('name', '?')}")
    elif kind in (KIND_POINTER, KIND_INTERFACE):
        for child in children:  # the pointee / the dynamic value keeps the same path
            yield from leaves(child, path)


def find_sightings(variables: list[dict], where: str, sentinels: list[str]) -> tuple[list[Sighting], list[str]]:
    sightings: list[Sighting] = []
    unreadable: list[str] = []
    for variable in variables:
        name = variable.get("name") or "?"
        for path, text in leaves(variable, name):
            if text is None:
                unreadable.append(f"{where}:{path}")
                continue
            for value in sentinels:
                if value in text:
                    sightings.append(Sighting(value, where, path))
    # A map key and its value both match when the key itself is a sentinel: keep one per path.
    unique = list(dict.fromkeys(sightings))
    return unique, unreadable


def _frames(stacktrace: list[dict]) -> list[Frame]:
    frames = []
    for frame in stacktrace:
        function = (frame.get("function") or {}).get("name", "?")
        frames.append(Frame(function, frame.get("file", ""), frame.get("line", 0)))
    return frames


def thread_to_event(thread: dict, process: str, seq: int, sentinels: list[str], probe_pass: int,
                    when: float, source_root: str = "") -> Event:
    """One stopped thread at a tracepoint -> one event."""
    breakpoint = thread.get("breakPoint") or {}
    info = thread.get("breakPointInfo") or {}
    returning = bool(breakpoint.get("traceReturn"))
    arguments = info.get("arguments") or []
    # Result parameters (~r0, named results) are garbage at entry; at a return they are the results.
    params = [a for a in arguments if not (a.get("flags", 0) & FLAG_RETURN_ARGUMENT)]
    results = [a for a in arguments if a.get("flags", 0) & FLAG_RETURN_ARGUMENT]
    if returning and thread.get("ReturnValues"):
        results = thread["ReturnValues"]
    sightings, unreadable = find_sightings(params, "argument", sentinels)
    if returning:
        found, missing = find_sightings(results, "return", sentinels)
        sightings += found
        unreadable += missing
        found, missing = find_sightings(info.get("locals") or [], "local", sentinels)
        sightings += found
        unreadable += missing
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
        sightings=sightings,
        unreadable=unreadable,
        probe_pass=probe_pass,
        time=when,
    )
