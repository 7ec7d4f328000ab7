"""What to probe next: a pure decision from one pass's localizations, events and plan.

For every sentinel that is not settled, refinement looks where the evidence points
and adds those functions to the plan, per process:

- up: a value handed back (returned, written through an argument or a captured
  variable, kept for a caller) to a caller nobody probed: that caller, the first
  frame of containerd's code above it on the observed stack;
- closures: a value seen inside a function value (an option closure that captured
  it) or written into a captured variable: the closure, and the function that built it;
- down: the drop candidate (its static callees in containerd's code and the writes,
  reads and transforms of harness.probes.sinks it calls), and the functions that held
  the value in the processes that produce the stage that lost it (their static callees,
  and the writes, reads and transforms they reach in two calls);
- the writer's stack: in those processes, the unprobed containerd frames above the
  writes that were probed (the code that wrote the stage);
- entries: when the value was not seen in those processes at all, where values enter
  them (the version table's empty plan), and the writes and reads reachable from the
  probed functions that ran there;
- changed forms only: callers and callees of the first function that held a changed form.

A dropped sentinel whose candidate calls nothing unprobed is pinned. Every sentinel
gets a stop reason or a reason for the next pass; the loop (harness/investigate.py)
runs passes while any sentinel is not settled and --max-passes allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.graph.localize import API_MODULE, SPECIFIC, Localization, Scope
from harness.probes.events import Event
from harness.probes.sinks import IO_FUNCTIONS

MAX_NEW_PROBES = 120  # per process and pass
MAX_PLAN = 400  # functions per process at most: beyond that a pass costs more than it tells
PRUNE_HITS = 20  # a probe hit this often in a pass without a sentinel is dropped from the next
_WRAPPER = re.compile(r"\.(gowrap|deferwrap)\d+$|-fm$|\.init(\.\d+)?$")
_CLOSURE_SUFFIX = re.compile(r"(\.func\d+)(\.\d+)*$")


def in_scope(function: str, module: str) -> bool:
    """Functions of containerd itself (its module and its API module; not the runtime, not vendored
    libraries, no compiler wrappers)."""
    if not function.startswith((module + "/", module + ".", API_MODULE + "/")):
        return False
    if "/annotraceprobe." in function:  # the gotrace backend's own probe package
        return False
    return not _WRAPPER.search(function)


def enclosing(closure: str) -> str | None:
    """core/images.Manifest.func1 -> core/images.Manifest (the function that built the closure)."""
    outer = _CLOSURE_SUFFIX.sub("", closure)
    return outer if outer != closure else None


@dataclass
class Decision:
    add: dict[str, list[str]] = field(default_factory=dict)  # process -> functions to probe next
    why: dict[str, list[str]] = field(default_factory=dict)  # sentinel -> why it needs another pass
    stops: dict[str, str] = field(default_factory=dict)  # sentinel -> why it needs nothing more
    prune: dict[str, list[str]] = field(default_factory=dict)  # process -> functions no longer worth a probe

    @property
    def empty(self) -> bool:
        return not any(self.add.values())


class _Additions:
    def __init__(self, plan: dict[str, list[str]], available: dict[str, set[str]],
                 pruned: dict[str, set[str]] | None = None) -> None:
        self.probed = {p: set(fs) for p, fs in plan.items()}
        self.available = available
        self.pruned = pruned or {}
        self.ordered: dict[str, dict[str, None]] = {p: {} for p in plan}

    def add(self, process: str, function: str | None) -> bool:
        if not function or process not in self.ordered or function in self.probed[process]:
            return False
        if function in self.pruned.get(process, ()):
            return False
        if function not in self.available.get(process, set()):
            return False
        # Already queued for another sentinel: a lead for this one too (so it does not widen further).
        self.ordered[process][function] = None
        return True

    def result(self) -> dict[str, list[str]]:
        room = {p: max(0, MAX_PLAN - len(self.probed[p])) for p in self.ordered}
        return {p: list(fs)[:min(MAX_NEW_PROBES, room[p])] for p, fs in self.ordered.items()}


def _callers_above(event: Event, module: str) -> str | None:
    """The first frame of containerd's code above the event's function on its stack."""
    for frame in event.stack[1:]:
        if in_scope(frame.function, module):
            return frame.function
    return None


def prunable(events: list[Event], hits: int = PRUNE_HITS) -> dict[str, list[str]]:
    """Probed functions hit at least `hits` times in a pass without holding any sentinel, exactly or
    changed (the program runs the same way in every pass): they cost a stop each and tell nothing.
    Writes stay: a write without a value is evidence."""
    calls: dict[tuple[str, str], int] = {}
    seen: set[tuple[str, str]] = set()
    for event in events:
        key = (event.process, event.function)
        if event.kind == "call":
            calls[key] = calls.get(key, 0) + 1
        if event.sightings:
            seen.add(key)
    out: dict[str, list[str]] = {}
    for (process, function), count in sorted(calls.items()):
        if count >= hits and (process, function) not in seen and IO_FUNCTIONS.get(function) != "write":
            out.setdefault(process, []).append(function)
    return out


def next_probes(localizations: dict[str, Localization], events: list[Event], plan: dict[str, list[str]],
                index, scope: Scope, available: dict[str, set[str]],
                entries: dict[str, list[str]] | None = None, pruned: dict[str, set[str]] | None = None) -> Decision:
    """The functions to probe next and, per sentinel, why (or why not).

    `index.callees_many(process, functions)` and `index.reachable(process, functions, depth)` give
    static callees; `available` is every function of each process's binary; `entries` the empty
    plan's functions per process; `pruned` what earlier passes dropped (never added again)."""
    decision = Decision(prune=prunable(events))
    gone = {p: set(pruned.get(p, ())) | set(decision.prune.get(p, ())) for p in plan} if pruned else \
        {p: set(decision.prune.get(p, ())) for p in plan}
    adding = _Additions(plan, available, gone)
    module = scope.module
    for value, loc in localizations.items():
        if loc.status == "reached":
            decision.stops[value] = "reached the runtime"
            continue
        if loc.status == "incomplete":
            decision.stops[value] = f"incomplete: {'; '.join(loc.unknown) or 'a probe failed'}"
            continue
        why: list[str] = []
        processes = loc.search or tuple(plan)
        if loc.status == "dropped":
            top = loc.candidates[0]
            down = _down(index, top.process, [top.function], module, io_depth=1)
            added = [f for f in down if adding.add(top.process, f)]
            if added:
                why.append(f"{_short(top.function)} calls {len(added)} unprobed function(s)")
            # Where V went on from it: the callees it gave V to, which let it go nowhere either, and the
            # closures they held with V inside (called through a function value: not a static call).
            dead = [c for h in top.invocations for c in h.dead_children]
            names = sorted({c.function for c in dead})
            added = [f for f in _down(index, top.process, names, module) if adding.add(top.process, f)]
            if added:
                why.append(f"{', '.join(_short(f) for f in names)} got it from {_short(top.function)} and call "
                           f"{len(added)} unprobed function(s)")
            # The code between it and the writes it made (interface calls: not static).
            for h in top.invocations:
                for frame in _frames_to_writes(h.invocation, events, module, h.held_since):
                    if adding.add(top.process, frame):
                        why.append(f"{_short(frame)} is on the way from {_short(top.function)} to a write")
            # V ended in its own variables and it returns no data (nothing shows what it made instead),
            # or an argument lost V while it ran though no probed callee was given V: it may have handed V
            # on through a call no static list shows (an interface method, a function value). Before naming
            # it, watch every write of its process: a write holding V under it says V went on; one without
            # V under it leads to the code that wrote (see _frames_to_writes).
            strongest = max(h.evidence_class for h in top.invocations)
            silent = strongest in (0, 2) and not any(h.returns_data for h in top.invocations)
            if strongest < 3 and (silent or any(h.lost_input for h in top.invocations)):
                writes = [f for f, role in IO_FUNCTIONS.items() if role == "write" and adding.add(top.process, f)]
                if writes:
                    why.append(f"{_short(top.function)} kept it to itself or lost it from an argument: watching "
                               f"the {len(writes)} write(s) of {top.process} a dynamic call could reach")
            related = [h.invocation for h in top.invocations] + dead
            why += _closure_leads(value, [e for i in related for e in (i.call, i.ret) if e is not None], adding,
                                  module)
            # Where a holder (the candidate itself included) handed it on to a caller nobody probed, or
            # kept it for one, the value went on past what was seen: that caller may carry it further
            # than the candidate (and lose it elsewhere).
            why += _handed_up_leads(loc, processes, module, adding)
            # A changed form was held and the candidate did not change it: whoever did is not probed yet.
            if max(h.evidence_class for h in top.invocations) < 4:
                why += _changed_leads(value, loc, events, processes, index, module, adding, entries or {})
            if why:
                decision.why[value] = why
            else:
                decision.stops[value] = (f"pinned: {_short(top.function)} ({top.process}); "
                                         "every function it calls is probed")
            continue
        # unresolved or not-seen: in each process that produces the stage that lost it, the leads
        # most telling first; a tier is followed only when the ones before it gave nothing to probe.
        for process in processes:
            if _went_through(loc, process, module):
                continue  # every function there that held it sent it out: the leads are elsewhere
            for tiers in ((_changed_leads,), (_up_leads, _terminal_leads), (_holder_leads, _writer_leads),
                          (_entry_leads,), (_widening_leads,)):
                found = [w for tier in tiers for w in tier(value, loc, events, (process,), index, module, adding,
                                                           entries or {})]
                if found:
                    why += found
                    break
        why = list(dict.fromkeys(why))
        if why:
            decision.why[value] = why
        else:
            reason = "; ".join(loc.waiting) or "nobody probed held it"
            decision.stops[value] = f"{loc.status}: nothing left to probe ({reason})"
    decision.add = adding.result()
    return decision


def _went_through(loc, process: str, module: str) -> bool:
    """Whether the value only went through `process`: every function of containerd's code there that held
    it sent it out of the process (a write holding it, an RPC the next process received)."""
    here = [h for h in loc.handlings if h.invocation.process == process
            and IO_FUNCTIONS.get(h.invocation.function) is None and in_scope(h.invocation.function, module)]
    return bool(here) and all(h.out for h in here)


def _changed_leads(value, loc, events, processes, index, module, adding, entries) -> list[str]:
    """Only a changed form was held: probe around the first invocation that held one (its callees, caller)."""
    from harness.graph.localize import invocations

    changed = [i for i in invocations([e for e in events if e.process in processes])
               if any(e is not None and e.variants(value) and not e.holds(value) for e in (i.call, i.ret))]
    if not changed:
        return []
    first = min(changed, key=lambda i: i.first_seq)
    why = []
    event = first.call or first.ret
    caller = _callers_above(event, module) if event else None
    if caller and adding.add(first.process, caller):
        why.append(f"{_short(first.function)} held a changed form; its caller {_short(caller)} is not probed")
    for f in _down(index, first.process, [first.function], module):
        if adding.add(first.process, f):
            why.append(f"{_short(first.function)} held a changed form and calls unprobed functions")
    return why


def _up_leads(value, loc, events, processes, index, module, adding, entries) -> list[str]:
    """Closures that captured it, and callers nobody probed that it was handed back to."""
    why = _closure_leads(value, [e for e in events if e.process in processes], adding, module)
    return why + _handed_up_leads(loc, processes, module, adding)


def _handed_up_leads(loc, processes, module, adding) -> list[str]:
    """Callers nobody probed that a holder handed the value back to (or kept it for)."""
    why = []
    for h in loc.handlings:
        invocation = h.invocation
        if invocation.process not in processes:
            continue  # upstream of a stage that still had it
        if IO_FUNCTIONS.get(invocation.function) == "write":
            continue  # the value left through it: what its callers do with the message tells nothing
        if _echoes(h):
            continue  # its caller gave it V and gets it back as it gave it: the caller had it already
        event = invocation.ret or invocation.call
        if (h.up or h.kept_for_caller) and event is not None:
            caller = _callers_above(event, module)
            if caller and adding.add(invocation.process, caller):
                how = "handed it back to" if h.up else "kept it for"
                why.append(f"{_short(invocation.function)} {how} {_short(caller)}, not probed")
        if any(p.startswith("captured ") for p in h.up) and (outer := enclosing(invocation.function)):
            if adding.add(invocation.process, outer):
                why.append(f"{_short(invocation.function)} wrote it into a variable of {_short(outer)}")
    return why


def _echoes(handling) -> bool:
    """Got V only from its arguments and hands it up no closer to the surface than it got it (a request
    handler returning its response, a copy): the caller learns nothing new. One that pulls V out of a
    big value (a command-line parser) or got it from below (a callee, a file) is followed up."""
    if not handling.got or not all(g.startswith("argument ") for g in handling.got):
        return False
    up = [p.split(" ", 2)[2] for p in handling.up if p.startswith("return value ")]
    from harness.graph.localize import _path_depth

    return bool(up) and min(_path_depth(p) for p in up) >= handling.specificity


def _near(loc, processes, module, terminal: bool):
    """Holders in `processes`: those handed the value itself first, then the latest first."""
    return sorted((h for h in loc.handlings if h.invocation.process in processes and h.terminal == terminal
                   and in_scope(h.invocation.function, module)),
                  key=lambda h: (h.specificity > SPECIFIC, -h.invocation.last_seq))


def _down_from(holders, index, module, adding) -> list[str]:
    why = []
    for h in holders:
        added = [f for f in _down(index, h.invocation.process, [h.invocation.function], module)
                 if adding.add(h.invocation.process, f)]
        if added:
            why.append(f"{_short(h.invocation.function)} held it and calls {len(added)} unprobed function(s)")
    return why


def _terminal_leads(value, loc, events, processes, index, module, adding, entries) -> list[str]:
    """Down from the holders that were handed the value and let it go nowhere."""
    return _down_from([h for h in _near(loc, processes, module, True) if h.specificity <= SPECIFIC], index, module,
                      adding)


def _holder_leads(value, loc, events, processes, index, module, adding, entries) -> list[str]:
    """Down from the other holders (a branch of theirs may have lost it, e.g. a write), then from those that
    only carried it deep inside a bigger value."""
    near = _near(loc, processes, module, False) + [h for h in _near(loc, processes, module, True)
                                                   if h.specificity > SPECIFIC]
    return _down_from(near, index, module, adding)




def _writer_leads(value, loc, events, processes, index, module, adding, entries) -> list[str]:
    """The unprobed containerd frames above the writes probed in those processes (the stage's writers)."""
    why = []
    for event in events:
        if event.process in processes and event.kind == "call" and IO_FUNCTIONS.get(event.function) == "write":
            for frame in event.stack[1:]:
                if in_scope(frame.function, module) and adding.add(event.process, frame.function):
                    why.append(f"{_short(frame.function)} made a write ({event.function.rsplit('.', 1)[-1]})")
    return why


def _entry_leads(value, loc, events, processes, index, module, adding, entries) -> list[str]:
    """Not seen there: where values enter those processes, and the writes and reads of what ran there."""
    if any(h.invocation.process in processes for h in loc.handlings):
        return []
    why = []
    ran = {(e.process, e.function) for e in events}
    for process in processes:
        for function in entries.get(process, []):
            if adding.add(process, function):
                why.append(f"not seen in {process}: probing where values enter it")
        # Writes and reads only: transforms (marshalling) run for every RPC message.
        for function in _io_reachable(index, process, sorted(f for p, f in ran if p == process),
                                      roles=("write", "read")):
            if adding.add(process, function):
                why.append(f"not seen in {process}: probing the writes and reads of what ran there")
    return why


def _widening_leads(value, loc, events, processes, index, module, adding, entries) -> list[str]:
    """Nothing else: callees of the probed functions that ran in those processes."""
    why = []
    ran = {(e.process, e.function) for e in events}
    for process in processes:
        ran_here = sorted(f for p, f in ran if p == process)
        for callees in (index.callees_many(process, ran_here).values() if ran_here else []):
            for callee in callees:
                if in_scope(callee, module) and adding.add(process, callee):
                    why.append(f"not found in {process}: widening to callees of the functions that ran")
    return why


def _frames_to_writes(invocation, events: list[Event], module: str, since: int | None = None) -> list[str]:
    """Unprobed containerd frames between `invocation` and the probed writes made inside it after `since`
    (from when it held the value: a write before that cannot have carried it, or lost it)."""
    if invocation.call is None or invocation.ret is None or since is None:
        return []
    frames = []
    for event in events:
        if event.kind != "call" or IO_FUNCTIONS.get(event.function) != "write" or event.process != invocation.process:
            continue
        if not (max(invocation.call.seq, since) < event.seq < invocation.ret.seq) or \
                event.goroutine != invocation.goroutine:
            continue
        names = [f.function for f in event.stack[1:]]
        if invocation.function in names:
            frames += [n for n in names[:names.index(invocation.function)] if in_scope(n, module)]
    return list(dict.fromkeys(frames))


def _closure_leads(value: str, events: list[Event], adding: _Additions, module: str) -> list[str]:
    """Closures of containerd's code seen holding the value (an option built now, applied later): probe them."""
    why = []
    for event in events:
        for sighting in event.sightings:
            if sighting.value != value:
                continue
            for closure in sighting.closures:
                if in_scope(closure, module) and adding.add(event.process, closure):
                    why.append(f"{_short(closure)} captured it ({_short(event.function)} held the closure)")
    return why


def _down(index, process: str, functions: list[str], module: str, io_depth: int = 2) -> list[str]:
    """Static callees of `functions` in containerd's code, then the IO functions they reach in `io_depth` calls."""
    callees = [c for f, cs in index.callees_many(process, functions).items() for c in cs if in_scope(c, module)]
    return list(dict.fromkeys(callees + _io_reachable(index, process, functions, io_depth)))


def _io_reachable(index, process: str, functions: list[str], depth: int = 2,
                  roles: tuple[str, ...] = ("write", "read", "transform")) -> list[str]:
    if not functions:
        return []
    reach = index.reachable(process, functions, depth=depth)
    return sorted((f for f in reach if IO_FUNCTIONS.get(f) in roles), key=lambda f: reach[f])


def _short(function: str) -> str:
    for prefix in ("github.com/containerd/containerd/v2/", "github.com/containerd/containerd/"):
        if function.startswith(prefix):
            return function[len(prefix):]
    return function
