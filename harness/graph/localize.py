"""Localization: for each sentinel, the function that held it and passed it to nobody.

An invocation is a call event paired with its return event (same process,
goroutine, function and callers). For a sentinel value V, an invocation

  got V   when V was in its arguments at entry, or in its locals at return;
  passed V on when V was in its return values, or in an argument at return that did
          not hold it at entry (written through a pointer), or a probed callee
          received V in its arguments, or (for a client RPC) the daemon handler did;
  kept V  with its caller when V was in its arguments at entry and still at return.

A drop candidate got V, did not pass it on and did not merely keep it for its
caller, while the runtime never saw V. Candidates are grouped by function and
ranked (see `_rank`); the ranking and its reasons go into the report.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field

from harness.probes.events import Event
from harness.versions import V1_MODULE, V2_MODULE


@dataclass
class Invocation:
    process: str
    function: str
    goroutine: int
    callers: tuple[str, ...]
    call: Event | None = None
    ret: Event | None = None

    @property
    def frames(self) -> tuple[str, ...]:
        return (self.function, *self.callers)

    @property
    def first_seq(self) -> int:
        return (self.call or self.ret).seq  # type: ignore[union-attr]

    @property
    def last_seq(self) -> int:
        return (self.ret or self.call).seq  # type: ignore[union-attr]


def invocations(events: list[Event]) -> list[Invocation]:
    """Pair calls and returns; an unmatched call is an invocation whose return was not seen."""
    open_calls: dict[tuple, list[Invocation]] = {}
    last_closed: dict[tuple, Invocation] = {}
    result: list[Invocation] = []
    for event in sorted(events, key=lambda e: e.seq):
        key = (event.process, event.goroutine, event.function, event.caller_stack)
        if event.kind == "call":
            invocation = Invocation(event.process, event.function, event.goroutine, event.caller_stack, call=event)
            open_calls.setdefault(key, []).append(invocation)
            last_closed.pop(key, None)
            result.append(invocation)
        else:
            pending = open_calls.get(key)
            if pending:
                closed = pending.pop()
                closed.ret = event
                last_closed[key] = closed
            elif key in last_closed:
                # A function with defers stops at two return locations in one return (before
                # and after its deferred calls); the later one holds the final results.
                last_closed[key].ret = event
            else:  # probes set while the function was already running
                result.append(Invocation(event.process, event.function, event.goroutine, event.caller_stack, ret=event))
    return result


def _paths(event: Event | None, value: str, where: str) -> list[str]:
    if event is None:
        return []
    return [s.path for s in event.sightings if s.value == value and s.where == where]


@dataclass
class Handling:
    """What one invocation did with one value."""

    invocation: Invocation
    got: list[str]  # evidence: where V was held
    passed: list[str]  # evidence: how V went on
    kept_for_caller: bool
    complete: bool  # its return was observed
    unreadable_out: list[str] = field(default_factory=list)  # outputs delve could not read in full

    @property
    def dropped(self) -> bool:
        # An output that could not be read might carry the value: unknown, never "dropped".
        return (self.complete and bool(self.got) and not self.passed and not self.kept_for_caller
                and not self.unreadable_out)


_BINARY_BYTES = re.compile(r" \(bytes, truncated at \d+\)$")


def _may_hide_text(entry: str) -> bool:
    """Truncated text or JSON bytes might hold the value; binary bytes (bbolt pages) do not count."""
    return not _BINARY_BYTES.search(entry)


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    return len(inner) > len(outer) and inner[len(inner) - len(outer):] == outer


def handle(invocation: Invocation, value: str, all_invocations: list[Invocation],
           rpc_joins: tuple[tuple[str, str], ...] = ()) -> Handling:
    entry_args = _paths(invocation.call, value, "argument")
    exit_args = _paths(invocation.ret, value, "argument")
    locals_ = _paths(invocation.ret, value, "local")
    returned = _paths(invocation.ret, value, "return")
    got = [f"argument {p} at entry" for p in entry_args] + [f"local {p} at return" for p in locals_]
    passed = [f"return value {p}" for p in returned]
    if not entry_args:
        passed += [f"argument {p} written before return" for p in exit_args]
    for other in all_invocations:
        if other.process != invocation.process or other.call is None:
            continue
        if _contains(invocation.frames, other.frames) and _paths(other.call, value, "argument"):
            if invocation.call is None or invocation.ret is None or \
                    invocation.call.seq < other.call.seq < invocation.ret.seq:
                passed.append(f"passed to {other.function} (argument)")
    for client, handler in rpc_joins:
        if invocation.function == client:
            for other in all_invocations:
                if other.function == handler and other.call is not None and _paths(other.call, value, "argument"):
                    passed.append(f"sent to the daemon: {handler} received it")
    kept = bool(entry_args) and bool(exit_args)
    # Results that could not be read in full might carry the value. Through arguments only the
    # marshalled spec counts: contexts and receivers reach past any load limit and are inputs.
    unreadable_out = [u for u in (invocation.ret.unreadable if invocation.ret else [])
                      if (u.startswith("return:") and _may_hide_text(u))
                      or (u.startswith("argument:") and not entry_args and "(json bytes, truncated" in u)]
    return Handling(invocation, got, sorted(set(passed)), kept, complete=invocation.ret is not None,
                    unreadable_out=unreadable_out)


@dataclass
class Candidate:
    function: str
    process: str
    file: str
    line: int
    invocations: list[Handling] = field(default_factory=list)
    on_sink_path: bool = False
    reasons: list[str] = field(default_factory=list)
    score: tuple = ()

    @property
    def call_paths(self) -> list[list[str]]:
        """Distinct caller chains, innermost first, cut after the last frame of the drop's module."""
        module = next((m for m in (V2_MODULE, V1_MODULE) if self.function.startswith(m + "/") or
                       self.function.startswith(m + ".")), "")
        unique: dict[tuple[str, ...], None] = {}
        for handling in self.invocations:
            callers = handling.invocation.callers
            if module:
                inside = [i for i, f in enumerate(callers) if f.startswith(module)]
                callers = callers[: inside[-1] + 1] if inside else callers
            unique[callers] = None
        return [list(path) for path in unique]

    def evidence(self, value_label: str) -> str:
        first = self.invocations[0]
        held = "; ".join(dict.fromkeys(first.got))
        returns = [s for s in (first.invocation.ret.sightings if first.invocation.ret else [])]
        return_note = "absent from return values" if not any(s.where == "return" for s in returns) else ""
        return f"{value_label}: {held}; {return_note or 'not passed on'}; not passed to any probed callee"


def _rank(candidate: Candidate, sink_roots: tuple[str, ...]) -> tuple:
    on_sink = any(root in path for h in candidate.invocations for path in [h.invocation.callers] for root in sink_roots)
    candidate.on_sink_path = on_sink
    explicit = any("local" in g for h in candidate.invocations for g in h.got)
    paths = len(candidate.call_paths)
    last = max(h.invocation.last_seq for h in candidate.invocations)
    candidate.reasons = [
        ("on the path that builds the container (under " + ", ".join(r.rsplit("/", 1)[-1] for r in sink_roots) + ")")
        if on_sink else "not under the container-building path",
        "held the value in a local at return" if explicit else "held the value only as an argument",
        f"{paths} distinct call path(s), {len(candidate.invocations)} invocation(s)",
        f"last seen at event {last}",
    ]
    return (on_sink, explicit, paths, last)


@dataclass
class Localization:
    value: str
    status: str  # reached | dropped | not-seen | unresolved | incomplete
    candidates: list[Candidate] = field(default_factory=list)
    first_seen: dict | None = None
    last_carriers: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # invocations whose return was not seen

    @property
    def drop(self) -> Candidate | None:
        return self.candidates[0] if self.status == "dropped" and self.candidates else None


def localize(value: str, events: list[Event], reached_runtime: bool | None, *,
             sink_roots: tuple[str, ...] = (), rpc_joins: tuple[tuple[str, str], ...] = (),
             fault: str | None = None) -> Localization:
    if fault:
        return Localization(value, "incomplete", unknown=[fault])
    if reached_runtime is None:
        return Localization(value, "incomplete", unknown=["the runtime's copy of config.json was not recorded"])
    all_invocations = invocations(events)
    holding = [i for i in all_invocations if any(s.value == value for e in (i.call, i.ret) if e for s in e.sightings)]
    if not holding:
        return Localization(value, "reached" if reached_runtime else "not-seen")
    first_event = min((e for e in events if e.holds(value)), key=lambda e: e.seq)
    first_seen = {"function": first_event.function, "process": first_event.process, "seq": first_event.seq,
                  "kind": first_event.kind, "where": [f"{s.where} {s.path}" for s in first_event.holds(value)]}
    last_carriers = list(dict.fromkeys(i.function for i in sorted(holding, key=lambda i: i.last_seq, reverse=True)))[:5]
    if reached_runtime:
        return Localization(value, "reached", first_seen=first_seen, last_carriers=last_carriers)
    handlings = [handle(i, value, all_invocations, rpc_joins) for i in holding]
    unknown = [f"{h.invocation.function} (return not observed)" for h in handlings if not h.complete and h.got]
    unknown += [f"{h.invocation.function}: held it, but {h.unreadable_out[0].split(':', 1)[1]} could not be read"
                for h in handlings if h.complete and h.got and not h.passed and h.unreadable_out]
    unknown = list(dict.fromkeys(unknown))
    grouped: dict[tuple[str, str], Candidate] = {}
    for handling in handlings:
        if not handling.dropped:
            continue
        invocation = handling.invocation
        ret = invocation.ret
        assert ret is not None
        key = (invocation.process, invocation.function)
        if key not in grouped:
            grouped[key] = Candidate(invocation.function, invocation.process, ret.file, ret.line)
        grouped[key].invocations.append(handling)
    candidates = list(grouped.values())
    for candidate in candidates:
        candidate.score = _rank(candidate, sink_roots)
    candidates.sort(key=lambda c: c.score, reverse=True)
    status = "dropped" if candidates else "unresolved"
    return Localization(value, status, candidates, first_seen, last_carriers, unknown)
