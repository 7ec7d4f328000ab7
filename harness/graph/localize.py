"""Localization: for each sentinel, the function that held it and let it go nowhere.

An invocation is a call event paired with its return event (same process, goroutine,
function and callers). For a sentinel value V, an invocation

  got V      when V was in its arguments at entry, in its locals or captured variables at
             return, or came back to it from a probed callee (its results, a file it read);
  sent V up  to its caller: in its results, written through an argument, or written into a
             variable it captured by reference (the enclosing function's);
  sent V out of its subtree: a write of its own (a file, a bolt bucket, an RPC request)
             that holds V, the handler of its RPC in the next process receiving V, or a
             probed callee given V that sent V out itself (what a callee hands back stays
             with the caller, who must pass it on);
  changed V  when what it sent holds V changed (cut, another case, re-encoded), not V;
  kept V     when V was in its arguments at entry and still at return (its caller has it).

An invocation that got V and sent it neither up nor out is terminal. A terminal is a drop
candidate when V died there: it changed V (a mutation is a drop, evidence shows both
values), wrote without V (its own writes all lacked it), or did not keep V (V ended in its
own variables or was consumed). A terminal that kept V is a candidate only when no probed
invocation around it passed V on and it produced data (a result that could carry V);
otherwise it only read V. A kept value whose caller was not probed waits for refinement.

Stages decide where a drop can be: the first stage on the way to the runtime that lost
V (spec, bundle, runtime) names the processes that produce it (the version table's
`stage_processes`); a candidate elsewhere lies upstream of a stage that still had V and
is never named. Candidates are ranked (see `_rank`): by evidence, then by how directly
they held V (a function handed V itself before one handed a big value with V deep
inside, such as the whole command line), then innermost first; the ranking and its
reasons go into the report. A value a probe could not read in full is unknown, never
absent.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from harness.probes.events import Event, Unreadable
from harness.probes.sinks import io_role
from harness.versions import V1_MODULE, V2_MODULE, Layout, RpcJoin

API_MODULE = "github.com/containerd/containerd/api"
# The stages a container is made through, in order: the first one that lost V is where to search.
MAIN_LINE = ("spec", "bundle", "runtime")


@dataclass(frozen=True)
class Scope:
    """What localization needs to know about a containerd layout (built from the version table)."""

    module: str = V2_MODULE
    sink_roots: tuple[str, ...] = ()
    rpc_joins: tuple[RpcJoin, ...] = ()
    stage_processes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stage_roots: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, layout: Layout) -> Scope:
        return cls(layout.module, layout.sink_roots, layout.rpc_joins, layout.stage_processes, layout.stage_roots)

    def in_module(self, function: str) -> bool:
        """containerd's own code: its module, and its API module (the generated gRPC and ttrpc code)."""
        return function.startswith((self.module + "/", self.module + ".", API_MODULE + "/"))


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

    @property
    def depth(self) -> int:
        event = self.call or self.ret
        return len(event.stack) if event else 0


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


class _Nesting:
    """Which invocations ran inside which (same process and goroutine, inside its window, on its stack)."""

    def __init__(self, all_invocations: list[Invocation]) -> None:
        self.groups: dict[tuple[str, int], list[Invocation]] = {}
        for invocation in sorted(all_invocations, key=lambda i: i.first_seq):
            self.groups.setdefault((invocation.process, invocation.goroutine), []).append(invocation)
        self.starts = {k: [i.first_seq for i in v] for k, v in self.groups.items()}

    def inside(self, outer: Invocation) -> list[Invocation]:
        if outer.call is None or outer.ret is None:
            return []
        key = (outer.process, outer.goroutine)
        group, starts = self.groups.get(key, []), self.starts.get(key, [])
        low = bisect.bisect_right(starts, outer.call.seq)
        high = bisect.bisect_left(starts, outer.ret.seq)
        found = []
        for inner in group[low:high]:
            if inner is outer or inner.last_seq > outer.ret.seq:
                continue
            if _below(inner, outer):
                found.append(inner)
        return found

    def parent(self, inner: Invocation) -> Invocation | None:
        """The innermost probed invocation that `inner` ran inside."""
        key = (inner.process, inner.goroutine)
        best = None
        for outer in self.groups.get(key, []):
            if outer.first_seq >= inner.first_seq:
                break
            if outer is inner or outer.call is None or outer.ret is None or inner.last_seq > outer.ret.seq:
                continue
            if _below(inner, outer) and (best is None or outer.depth > best.depth):
                best = outer
        return best

    def children(self, outer: Invocation) -> list[Invocation]:
        """Probed invocations inside `outer` with no probed invocation between them."""
        inner = self.inside(outer)
        return [i for i in inner if not any(o is not i and _below(i, o) and o.first_seq < i.first_seq
                                            and i.last_seq <= o.last_seq for o in inner)]


def _below(inner: Invocation, outer: Invocation) -> bool:
    """`outer`'s function is on `inner`'s stack, with `outer`'s own callers above it (as far as both stacks go)."""
    for position, name in enumerate(inner.callers):
        if name == outer.function:
            above = inner.callers[position + 1:]
            span = min(len(above), len(outer.callers), 3)
            return above[:span] == outer.callers[:span]
    return False


def _root(path: str) -> str:
    """manifest.Annotations["k"] -> manifest; ~r0{...}.x -> ~r0; spec (bytes) -> spec."""
    return re.split(r"[.\[{ ]", path, maxsplit=1)[0]


def _exact(event: Event | None, value: str, where: str) -> list[str]:
    return [] if event is None else [s.path for s in event.sightings
                                     if s.value == value and s.where == where and s.exact]


def _variant(event: Event | None, value: str, where: str) -> list[tuple[str, str]]:
    return [] if event is None else [(s.path, s.text) for s in event.sightings
                                     if s.value == value and s.where == where and not s.exact]


def _any_sighting(event: Event | None, value: str) -> bool:
    return event is not None and any(s.value == value for s in event.sightings)


@dataclass
class Handling:
    """What one invocation did with one value."""

    invocation: Invocation
    got: list[str] = field(default_factory=list)  # evidence: where V was held
    up: list[str] = field(default_factory=list)  # V went to its caller (results, arguments or captured variables written)
    out: list[str] = field(default_factory=list)  # V left its subtree (a write of its own, an RPC, a callee's write)
    changed: list[str] = field(default_factory=list)  # what left it holds V changed
    wrote_without: list[str] = field(default_factory=list)  # its own writes, which lacked V
    kept_for_caller: bool = False
    held_since: int | None = None  # the event from which it is known to have held V (None: only at its return)
    lost_input: bool = False  # an argument held V at entry and not at return, and no probed callee was given V
    in_locals: bool = False  # V was in its own variables at return (locals, captured variables)
    returns_data: bool = False
    complete: bool = False  # its return was observed
    unreadable_out: list[Unreadable] = field(default_factory=list)  # outputs that could not be read in full
    unknown_children: list[str] = field(default_factory=list)  # callees given V whose return was not observed
    children: list[Invocation] = field(default_factory=list)  # probed callees that were given V
    dead_children: list[Invocation] = field(default_factory=list)  # of those, the ones that let it go nowhere
    specificity: int = 99  # how deep in a bigger value V sat where it was held (0: handed V itself)

    @property
    def passed(self) -> list[str]:
        return [*self.up, *self.out]

    @property
    def terminal(self) -> bool:
        return self.complete and bool(self.got) and not self.passed

    @property
    def evidence_class(self) -> int:
        """How plainly it lost V: changed it (4), wrote without it (3), V ended in its own variables (2),
        returned data without it (1), nothing (0). A hold deep inside a big value counts as (1) at most."""
        if self.changed:
            return 4
        if self.wrote_without:
            return 3
        if self.in_locals:
            return 2
        return 1 if self.returns_data else 0


HIDING_DEPTH = 4  # deepest unreadable part of an output that may hide V (see _may_hold)
SPECIFIC = 3  # at most this deep inside what a function held, V was handed to it rather than carried along
_MAP_KEY = re.compile(r'\["(?:[^"\\]|\\.)*"\]')  # a JSON-quoted map key (it may hold dots)


def _path_depth(path: str) -> int:
    """manifest.Annotations["k"] -> 2; annoStrings[0] -> 1; p (bytes) -> 0."""
    core = re.sub(r" \([^)]*\)$", "", path)
    core = _MAP_KEY.sub("[k]", core)
    core = re.sub(r"\{[^{}]*\}", "{}", core)
    return len(re.findall(r"[.\[{]", core))


def _outputs(invocation: Invocation, value: str) -> tuple[bool, bool]:
    """(exact V, a changed V) in what an invocation gave back: results, arguments written."""
    entry_roots = {_root(p) for p in _exact(invocation.call, value, "argument")}
    ret = invocation.ret
    if ret is None:
        return False, False
    exact = bool(_exact(ret, value, "return")) or any(_root(p) not in entry_roots
                                                      for p in _exact(ret, value, "argument"))
    variant = not exact and (bool(_variant(ret, value, "return")) or
                             any(_root(p) not in entry_roots for p, _ in _variant(ret, value, "argument")))
    return exact, variant


def _returned_depth(child: Invocation, value: str) -> int:
    """How deep V sat in what a callee handed back (its results, or an argument it wrote)."""
    paths = _exact(child.ret, value, "return") + _exact(child.ret, value, "argument")
    return min((_path_depth(p) for p in paths), default=99)


def _own(child: Invocation, parent: Invocation, scope: Scope) -> bool:
    """A write `parent`'s code made itself: the frame right above the write is containerd's code."""
    caller = child.callers[0] if child.callers else ""
    return caller == parent.function or scope.in_module(caller)


def _captured_before(invocation: Invocation, value: str, nesting: _Nesting) -> bool:
    """Whether this closure was handed down holding V (V was captured, an input, not written by it):
    an invocation it ran inside had the closure, holding V, in its arguments at entry."""
    outer = nesting.parent(invocation)
    while outer is not None:
        if outer.call is not None and any(s.value == value and s.exact and s.where == "argument"
                                          and invocation.function in s.closures for s in outer.call.sightings):
            return True
        outer = nesting.parent(outer)
    return False


def handle(invocation: Invocation, value: str, nesting: _Nesting, by_function: dict[tuple[str, str], list[Invocation]],
           scope: Scope) -> Handling:
    """What `invocation` did with `value`, before the liveness of its probed callees is known (see `localize`)."""
    h = Handling(invocation, complete=invocation.ret is not None)
    call, ret = invocation.call, invocation.ret
    entry_args = _exact(call, value, "argument")
    exit_args = _exact(ret, value, "argument")
    # An argument the debugger could not read at entry (some interfaces, there) but could at return was an
    # input all along, not something the function wrote.
    unread_at_entry = {_root(u.path) for u in (call.unreadable if call else []) if u.reason == "error"}
    late = [p for p in exit_args if _root(p) in unread_at_entry and _root(p) not in {_root(e) for e in entry_args}]
    entry_args = entry_args + late
    locals_ = _exact(ret, value, "local")
    captured = _exact(ret, value, "captured")
    by_reference = set(ret.captured) if ret else set()
    written_captured = [p for p in locals_ if _root(p) in by_reference]
    if written_captured and _captured_before(invocation, value, nesting):
        written_captured = []  # the closure was built holding V: an input, not a write
    h.got += [f"argument {p} at entry" for p in entry_args if p not in late]
    h.got += [f"argument {p} (read at return)" for p in late]
    h.got += [f"captured {p}" for p in captured]
    h.got += [f"local {p} at return" for p in locals_]
    paths = entry_args + captured + locals_
    h.specificity = min((_path_depth(p) for p in paths), default=99)
    # V ended in its own variables: held itself, or as an element or field of what it held (not
    # deep inside a big value such as the whole command line, which any reader of it holds too).
    h.in_locals = any(p not in written_captured and _path_depth(p) <= SPECIFIC for p in locals_ + captured)
    h.up += [f"return value {p}" for p in _exact(ret, value, "return")]
    h.changed += [f"return value {p} as {t!r}" for p, t in _variant(ret, value, "return")]
    entry_roots = {_root(p) for p in entry_args}
    h.up += [f"argument {p} written before return" for p in exit_args if _root(p) not in entry_roots]
    if not exit_args:
        h.changed += [f"argument {p} written as {t!r}" for p, t in _variant(ret, value, "argument")
                      if _root(p) not in entry_roots]
    h.up += [f"captured {p} written (a variable of the function that built the closure)" for p in written_captured]
    # Kept: still in its arguments at return, or in what its closure captured by value (the closure keeps it).
    h.kept_for_caller = (bool(entry_args) and any(_root(p) in entry_roots for p in exit_args)) or bool(captured)
    h.returns_data = bool(ret and ret.returns_data)
    children = nesting.children(invocation)
    # From when it is known to have held V: a write before that moment cannot have been "without" it.
    # V held only in its variables at return came in at an unknown moment: its writes prove nothing.
    held_since = call.seq if call and (entry_args or captured) else min(
        (c.ret.seq for c in children if c.ret and _exact(c.ret, value, "return")
         and bool(c.callers) and c.callers[0] == invocation.function), default=None)
    h.held_since = held_since
    for child in children:
        role = io_role(child.function)
        # Given V: in its arguments, or (a closure) in what it captured when it was built.
        received = _exact(child.call, value, "argument") or _exact(child.ret, value, "captured")
        exact, changed = _outputs(child, value)
        if role == "write":
            if not _own(child, invocation, scope):
                continue  # a library's write (a logger's), not this function's
            if received:
                h.out.append(f"wrote it with {child.function}")
            elif _variant(child.call, value, "argument"):
                h.changed.append(f"wrote it changed with {child.function}: "
                                 f"{_variant(child.call, value, 'argument')[0][1]!r}")
            elif held_since is not None and child.first_seq > held_since:
                h.wrote_without.append(f"with {child.function} without it")
            continue
        direct = bool(child.callers) and child.callers[0] == invocation.function
        if role is not None:  # a read or a transform: V comes back (or is lost in it, by the caller's choice)
            if exact and direct:
                h.got.append(f"came back from {child.function}")
                h.specificity = min(h.specificity, _returned_depth(child, value))
            elif changed and received:
                h.changed.append(f"{child.function} gave it back changed")
            continue
        if received:
            h.children.append(child)  # what it did with V decides (see localize)
            if child.ret is None:
                h.unknown_children.append(child.function)
        elif _variant(child.call, value, "argument") and not _any_exact(child, value):
            h.changed.append(f"passed to {child.function} changed: {_variant(child.call, value, 'argument')[0][1]!r}")
        if exact and not received and direct:  # through unprobed frames it went back to them, not to this one
            h.got.append(f"came back from {child.function}")
            h.specificity = min(h.specificity, _returned_depth(child, value))
        for cut in (child.call.unreadable if child.call else []):
            # A part cut by the load limits might hold V; a value the debugger failed to read at a
            # callee's entry (an interface it cannot decode there) is listed, but blocks nothing.
            if cut.where == "argument" and not received and cut.reason != "error" and _may_hold(cut, scope):
                h.unreadable_out.append(cut)
    for join in scope.rpc_joins:
        if invocation.function == join.client and invocation.process == join.client_process:
            for handler in by_function.get((join.server_process, join.handler), []):
                if _exact(handler.call, value, "argument"):
                    h.out.append(f"sent to {join.server_process}: {handler.function} received it")
                    break
    # Results that could not be read in full might carry the value. Through arguments only text
    # counts: contexts and receivers reach past any load limit and are inputs.
    for cut in (ret.unreadable if ret else []):
        if cut.where == "return" and _may_hold(cut, scope):
            h.unreadable_out.append(cut)
        elif cut.where == "argument" and not entry_args and cut.content in ("json-bytes", "text") and \
                _may_hold(cut, scope):
            h.unreadable_out.append(cut)
    h.lost_input = bool(entry_args) and not exit_args and h.complete and not h.children and not h.kept_for_caller
    h.got = list(dict.fromkeys(h.got))
    return h


def _senders(value: str, handlings: list[Handling], scope: Scope, lost: str | None) -> set[str]:
    """Processes that sent V on to the next one as part of the stage that lost it: their request (the join's
    transport call, or its client function) held V, and code of the server process then received V
    where the join carries that stage (a value sent as a label was not sent in the spec). Which ends
    of the join were probed does not matter."""
    senders = set()
    for join in scope.rpc_joins:
        part = dict(join.carries).get(lost or "")
        if part is None:
            continue
        sent = [h.invocation.first_seq for h in handlings if h.invocation.process == join.client_process
                and h.invocation.function in (join.transport, join.client)
                and _exact(h.invocation.call, value, "argument")]
        if not sent:
            continue
        if any(h.invocation.process == join.server_process and h.invocation.call is not None
               and h.invocation.first_seq > min(sent)
               and any(part in p for p in _exact(h.invocation.call, value, "argument")) for h in handlings):
            senders.add(join.client_process)
    return senders


def _may_hold(cut: Unreadable, scope: Scope) -> bool:
    """Whether V may hide in a value that could not be read: text, or a closure of containerd's code
    (a closure of a library, a context's cancel function, holds no annotation), not deeper than
    HIDING_DEPTH inside what was handed over (deeper down sit receivers' and contexts' own fields,
    carried along, not what the function made)."""
    if _path_depth(cut.path) > HIDING_DEPTH:
        return False
    if cut.content == "closure":
        return scope.in_module(cut.detail)
    if cut.reason == "error" and cut.vtype.startswith("func"):
        return False  # delve cannot read some function values at a function's entry; their calls are probed
    return cut.may_hide_text and cut.content in ("text", "json-bytes", "map", "slice", "value")


def _any_exact(invocation: Invocation, value: str) -> bool:
    return any(s.value == value and s.exact for e in (invocation.call, invocation.ret) if e for s in e.sightings)


@dataclass
class Candidate:
    function: str
    process: str
    file: str
    line: int
    invocations: list[Handling] = field(default_factory=list)
    on_sink_path: bool = False
    valid: bool = True  # in a process that produces the first stage that lost the value
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
        first = max(self.invocations, key=lambda h: h.evidence_class)
        held = "; ".join(dict.fromkeys(first.got))
        if first.changed:
            how = "changed: " + "; ".join(dict.fromkeys(first.changed))
        elif first.wrote_without:
            how = "wrote " + "; ".join(dict.fromkeys(first.wrote_without))
        else:
            how = "absent from return values"
        return f"{value_label}: {held}; {how}; not passed to any probed callee"


def _rank(candidate: Candidate, sink_roots: tuple[str, ...], roots: tuple[str, ...], inner: int,
          consistent: bool = True) -> tuple:
    on_sink = any(root in h.invocation.frames for h in candidate.invocations for root in (*roots, *sink_roots))
    candidate.on_sink_path = on_sink
    strength = max(h.evidence_class for h in candidate.invocations)
    specificity = min(h.specificity for h in candidate.invocations)
    depth = max(h.invocation.depth for h in candidate.invocations)
    explicit = any("local" in g for h in candidate.invocations for g in h.got)
    paths = len(candidate.call_paths)
    last = max(h.invocation.last_seq for h in candidate.invocations)
    strength_text = {4: "changed the value", 3: "wrote without the value", 2: "the value ended in its own variables",
                     1: "returned data without the value", 0: "held it and returned no data"}[strength]
    names = ", ".join(dict.fromkeys(r.rsplit("/", 1)[-1] for r in (*roots, *sink_roots))) or "-"
    candidate.reasons = [
        "in a process that produces the first stage that lost the value" if candidate.valid
        else "upstream of a stage that still had the value",
        strength_text,
        f"held the value {specificity} level(s) inside a bigger value" if specificity < 99 else "held the value",
        f"ran inside {inner} other candidate(s)",
        f"on the path that builds what reaches the runtime (under {names})" if on_sink
        else "not under the path that builds what reaches the runtime",
        f"{depth} frames deep, {paths} distinct call path(s), {len(candidate.invocations)} invocation(s)",
        f"last seen at event {last}",
    ]
    if not consistent:
        candidate.reasons.insert(1, "passed the value on in other invocations")
    return (candidate.valid, consistent, strength, -specificity, inner, on_sink, depth, explicit, paths, last)


@dataclass
class Localization:
    value: str
    status: str  # reached | dropped | not-seen | unresolved | incomplete
    candidates: list[Candidate] = field(default_factory=list)
    first_seen: dict | None = None
    last_carriers: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    lost_stage: str | None = None  # the first stage on the way to the runtime without the value
    search: tuple[str, ...] = ()  # the processes that produce that stage
    waiting: list[str] = field(default_factory=list)  # why the answer needs another pass
    handlings: list[Handling] = field(default_factory=list)  # every invocation that held the value

    @property
    def drop(self) -> Candidate | None:
        return self.candidates[0] if self.status == "dropped" and self.candidates else None


def lost_stage(stages: dict[str, bool | None]) -> str | None:
    """The first stage on the way to the runtime that did not have the value (after the last that did)."""
    reached = [s for s in MAIN_LINE if stages.get(s)]
    if reached:
        index = MAIN_LINE.index(reached[-1]) + 1
        return MAIN_LINE[index] if index < len(MAIN_LINE) else None
    return "spec" if stages.get("spec") is False else None


def localize(value: str, events: list[Event], stages: dict[str, bool | None] | bool | None, *,
             scope: Scope | None = None, fault: str | None = None) -> Localization:
    """Where `value` was dropped, from one pass's events and the value's stage map.

    `stages` may be just the runtime column (True/False/None) when no stage map is at hand."""
    scope = scope or Scope()
    if not isinstance(stages, dict):
        stages = {"runtime": stages}
    reached_runtime = stages.get("runtime")
    if fault:
        return Localization(value, "incomplete", unknown=[fault])
    if reached_runtime is None:
        return Localization(value, "incomplete", unknown=["the runtime's copy of config.json was not recorded"])
    all_invocations = invocations(events)
    holding = [i for i in all_invocations if _any_exact(i, value)]
    lost = None if reached_runtime else lost_stage(stages)
    search = tuple(scope.stage_processes.get(lost, ())) if lost else ()
    if not holding:
        changed = [i for i in all_invocations if any(_any_sighting(e, value) for e in (i.call, i.ret))]
        status = "reached" if reached_runtime else "unresolved" if changed else "not-seen"
        waiting = [f"only changed forms of the value were seen (first in {changed[0].function})"] if changed else []
        return Localization(value, status, lost_stage=lost, search=search, waiting=waiting)
    first_event = min((e for e in events if e.holds(value)), key=lambda e: e.seq)
    first_seen = {"function": first_event.function, "process": first_event.process, "seq": first_event.seq,
                  "kind": first_event.kind, "where": [f"{s.where} {s.path}" for s in first_event.holds(value)]}
    last_carriers = list(dict.fromkeys(i.function for i in sorted(holding, key=lambda i: i.last_seq, reverse=True)))[:5]
    if reached_runtime:
        return Localization(value, "reached", first_seen=first_seen, last_carriers=last_carriers)
    nesting = _Nesting(all_invocations)
    by_function: dict[tuple[str, str], list[Invocation]] = {}
    for invocation in all_invocations:
        by_function.setdefault((invocation.process, invocation.function), []).append(invocation)
    # What a probed callee hands back (its results, a file it read) is held by its caller too.
    for invocation in list(holding):
        if invocation.ret is not None and (_outputs(invocation, value)[0]):
            parent = nesting.parent(invocation)
            if parent is not None and parent not in holding and invocation.callers[:1] == (parent.function,):
                holding.append(parent)
    handlings = {id(i): handle(i, value, nesting, by_function, scope) for i in holding}
    # A callee given V passes it out of the caller only if it passed it out itself (a write, an RPC, or a
    # callee of its own that did): what a callee hands back stays with the caller. Iterate to a fixpoint.
    grown = True
    while grown:
        grown = False
        for h in handlings.values():
            if h.out:
                continue
            for child in h.children:
                ch = handlings.get(id(child))
                if ch is not None and ch.out:
                    h.out.append(f"passed to {child.function}, which passed it on")
                    grown = True
                    break
    # A process that sent V on to the next one (its RPC's handler received it) is upstream of the loss.
    senders = _senders(value, list(handlings.values()), scope, lost)
    if len(set(search) - senders) >= 1:
        search = tuple(p for p in search if p not in senders)
    result = Localization(value, "unresolved", first_seen=first_seen, last_carriers=last_carriers,
                          lost_stage=lost, search=search, handlings=list(handlings.values()))
    unknown = [f"{h.invocation.function} (return not observed)" for h in handlings.values() if not h.complete and h.got]
    holders = [h.invocation for h in handlings.values()]
    live = {id(h.invocation) for h in handlings.values() if h.passed}
    chosen: list[Handling] = []
    for h in handlings.values():
        if not h.terminal or not scope.in_module(h.invocation.function):
            continue  # a library function (json, a CLI parser) is never named: its caller chose it
        if h.unreadable_out or h.unknown_children:
            what = h.unreadable_out[0].describe() if h.unreadable_out else f"what {h.unknown_children[0]} did"
            unknown.append(f"{h.invocation.function}: held it, but {what} could not be read")
            continue
        if h.evidence_class >= 3:
            chosen.append(h)  # V died here: changed, or written without
            continue
        if h.specificity > SPECIFIC:
            continue  # it was handed a big value that happens to carry V (the command line): a reader
        if not h.kept_for_caller:
            chosen.append(h)  # V, handed to it, ended in it or was consumed there
            continue
        ancestors = _ancestors(h.invocation, holders, nesting)
        if any(id(a) in live for a in ancestors):
            continue  # the value went on from a caller: this one only read it
        if not ancestors:
            result.waiting.append(f"{h.invocation.function} kept it for a caller that was not probed")
        if h.evidence_class >= 1:
            chosen.append(h)
    # The value went on into a callee that let it go nowhere either: the callee is further along. A
    # callee it handed V to that lost it (produced data without it, or consumed it) is where it was
    # lost, even if the caller then wrote without it; a candidate deeper inside with evidence at
    # least as strong is too.
    def given_below(h: Handling) -> set[int]:
        """The invocations V was handed down to from `h`, callee by callee (each one given it by the last)."""
        seen: set[int] = set()
        frontier = list(h.children)
        while frontier:
            child = frontier.pop()
            if id(child) in seen:
                continue
            seen.add(id(child))
            if id(child) in handlings:
                frontier += handlings[id(child)].children
        return seen

    below = {id(h): given_below(h) for h in chosen}
    chosen = [h for h in chosen if not any(
        other is not h and other.evidence_class >= 1 and id(other.invocation) in below[id(h)]
        or other is not h and other.evidence_class >= h.evidence_class
        and h.invocation in _ancestors(other.invocation, [h.invocation], nesting) for other in chosen)]
    for h in handlings.values():
        h.dead_children = [c for c in h.children if id(c) in handlings and handlings[id(c)].terminal]
    result.unknown = list(dict.fromkeys(unknown))
    grouped: dict[tuple[str, str], Candidate] = {}
    for handling in chosen:
        invocation = handling.invocation
        assert invocation.ret is not None
        key = (invocation.process, invocation.function)
        if key not in grouped:
            grouped[key] = Candidate(invocation.function, invocation.process, invocation.ret.file, invocation.ret.line,
                                     valid=not search or invocation.process in search)
        grouped[key].invocations.append(handling)
    roots = tuple(f for _, f in scope.stage_roots.get(lost or "", ()))
    chosen_invocations = [h.invocation for h in chosen]
    ranked = list(grouped.values())
    for candidate in ranked:
        inner = max(len([o for o in _ancestors(h.invocation, chosen_invocations, nesting)]) for h in candidate.invocations)
        # Every invocation that held the value lost it, or only some (the others passed it on).
        consistent = all(not h.passed for h in handlings.values()
                         if (h.invocation.process, h.invocation.function) == (candidate.process, candidate.function))
        candidate.score = _rank(candidate, scope.sink_roots, roots, inner, consistent)
    ranked.sort(key=lambda c: c.score, reverse=True)
    result.candidates = ranked
    if ranked and ranked[0].valid:
        result.status = "dropped"
    elif ranked:
        result.waiting.append(f"every candidate is upstream of the {lost} stage, which lost it; "
                              f"search {', '.join(search)}")
    elif not result.waiting:
        terminals = [h for h in handlings.values() if h.terminal]
        result.waiting.append("every function that held it passed it on" if not terminals else
                              "the functions that held it last only read it")
    return result


def _ancestors(inner: Invocation, holders: list[Invocation], nesting: _Nesting) -> list[Invocation]:
    """The invocations of `holders` that `inner` ran inside."""
    return [o for o in holders if o is not inner and o.call is not None and o.ret is not None and
            o.process == inner.process and o.goroutine == inner.goroutine and
            o.call.seq < inner.first_seq and inner.last_seq <= o.ret.seq and _below(inner, o)]
