"""Unit tests for harness.graph.refine: what refinement probes next, and why, on made-up passes.

The static call index is a small table here (what `go tool objdump` would report); the
localizations come from harness.graph.localize on made-up events (tests/unit/eventkit.py).
"""

from __future__ import annotations

from eventkit import V, Run, arg, captured, local, ret

from harness.graph.localize import Scope, localize
from harness.graph.refine import MAX_PLAN, Decision, enclosing, in_scope, next_probes
from harness.versions import V2_LAYOUT, V2_MODULE

M = V2_MODULE
SCOPE = Scope.of(V2_LAYOUT)
SHIM = "containerd-shim-runc-v2"
LOST_IN_CTR = {"spec": False, "bundle": False, "runtime": False}


class Index:
    """Static callees from a table; anything not in it calls nothing."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def callees_many(self, process, functions):
        return {f: list(self.table.get(f, [])) for f in functions}

    def reachable(self, process, functions, depth):
        found: dict[str, int] = {}
        frontier = list(functions)
        for level in range(1, depth + 1):
            frontier = [c for f in frontier for c in self.table.get(f, []) if c not in found]
            for callee in frontier:
                found.setdefault(callee, level)
        return found


def decide(run: Run, stages: dict, plan: dict[str, list[str]], table: dict[str, list[str]],
           entries: dict[str, list[str]] | None = None) -> Decision:
    loc = localize(V, run.events, stages, scope=SCOPE)
    on_stacks = {f.function for e in run.events for f in e.stack}
    everything = {p: set(plan.get(p, [])) | {c for cs in table.values() for c in cs} | set(table) | on_stacks |
                  set((entries or {}).get(p, [])) for p in ("ctr", "containerd", SHIM)}
    full_plan = {p: plan.get(p, []) for p in ("ctr", "containerd", SHIM)}
    return next_probes({V: loc}, run.events, full_plan, Index(table), SCOPE, everything, entries)


def test_a_value_handed_back_to_an_unprobed_caller_probes_that_caller():
    run = Run()
    run.stack.append(f"{M}/core/images.Config")  # on the stack, not probed
    run.enter(f"{M}/core/images.Manifest")
    run.leave(ret('~r0.Annotations["k"]'), results=("ocispec.Manifest", "error"))
    decision = decide(run, LOST_IN_CTR, {"ctr": [f"{M}/core/images.Manifest"]}, {})
    assert decision.add["ctr"] == [f"{M}/core/images.Config"]
    assert "handed it back to core/images.Config" in decision.why[V][0]


def test_a_closure_seen_holding_the_value_is_probed():
    closure = f"{M}/pkg/oci.WithAnnotations.func1"
    run = Run()
    run.enter(f"{M}/pkg/oci.ApplyOpts", arg('opts[5]{c}.annotations["k"]', closures=(closure,)))
    run.leave(arg('opts[5]{c}.annotations["k"]', closures=(closure,)))
    decision = decide(run, LOST_IN_CTR, {"ctr": [f"{M}/pkg/oci.ApplyOpts"]}, {closure: []})
    assert closure in decision.add["ctr"]


def test_a_closure_writing_into_a_captured_variable_probes_the_function_that_built_it():
    assert enclosing(f"{M}/core/images.Manifest.func1") == f"{M}/core/images.Manifest"
    assert enclosing(f"{M}/core/images.Manifest") is None
    closure = f"{M}/core/images.Manifest.func1"
    run = Run()
    run.stack.append(f"{M}/core/images.Walk")
    run.enter(closure)
    run.leave(local('m[0].m.Annotations["k"]'), captured=("m",))
    decision = decide(run, LOST_IN_CTR, {"ctr": [closure]}, {f"{M}/core/images.Manifest": []})
    assert f"{M}/core/images.Manifest" in decision.add["ctr"]


def test_a_pinned_drop_stops_once_everything_it_calls_is_probed():
    config, manifest = f"{M}/core/images.Config", f"{M}/core/images.Manifest"
    run = Run()
    run.enter(config)
    run.leave(local('manifest.Annotations["k"]'), results=("ocispec.Descriptor", "error"))
    table = {config: [manifest, "fmt.Errorf"]}
    first = decide(run, LOST_IN_CTR, {"ctr": [config]}, table)
    assert first.add["ctr"] == [manifest] and V in first.why  # down into the candidate first
    second = decide(run, LOST_IN_CTR, {"ctr": [config, manifest]}, table)
    assert second.empty and second.stops[V].startswith("pinned: core/images.Config (ctr)")


def test_down_from_a_drop_reaches_the_writes_of_the_callees_it_gave_the_value_to():
    tasks, manager, bundle = (f"{M}/plugins/services/tasks.(*local).Create", f"{M}/core/runtime/v2.(*TaskManager).Create",
                              f"{M}/core/runtime/v2.NewBundle")
    run = Run()
    run.enter(tasks, process="containerd")
    run.enter(manager, arg("opts.Spec.Value (bytes)"), process="containerd")
    run.enter(bundle, arg("spec.Value (bytes)"), process="containerd")
    run.leave(arg("spec.Value (bytes)"), process="containerd", results=("*Bundle", "error"))
    run.leave(arg("opts.Spec.Value (bytes)"), process="containerd", results=("Task", "error"))
    run.leave(local("container.Spec.Value (bytes)"), process="containerd", results=("*CreateTaskResponse", "error"))
    table = {bundle: ["os.WriteFile", "os.MkdirAll"], manager: [bundle]}
    decision = decide(run, {"spec": True, "bundle": False, "runtime": False},
                      {"containerd": [tasks, manager, bundle]}, table)
    assert "os.WriteFile" in decision.add["containerd"]  # a write it reaches: did it lose the value there?


def test_a_value_lost_in_the_shim_is_searched_in_the_shim_only():
    run = Run()
    run.enter(f"{M}/core/runtime/v2.NewBundle", arg("spec.Value (bytes)"), process="containerd")
    run.leave(arg("spec.Value (bytes)"), process="containerd", results=("*Bundle", "error"))
    create = f"{M}/cmd/containerd-shim-runc-v2/task.(*service).Create"
    entries = {SHIM: ["os.ReadFile"]}
    decision = decide(run, {"spec": True, "bundle": True, "runtime": False},
                      {"containerd": [f"{M}/core/runtime/v2.NewBundle"], SHIM: [create]},
                      {f"{M}/core/runtime/v2.NewBundle": ["os.WriteFile"]}, entries)
    assert decision.add["containerd"] == []
    assert decision.add[SHIM] == ["os.ReadFile"]
    assert "not seen in containerd-shim-runc-v2" in decision.why[V][0]


def test_a_changed_form_probes_around_the_first_function_that_held_it():
    tasks, get = f"{M}/plugins/services/tasks.(*local).Create", f"{M}/plugins/services/tasks.(*local).getContainer"
    run = Run()
    run.enter(tasks, process="containerd")
    run.leave(local("container.Spec.Value (bytes)"), process="containerd")
    decision = decide(run, {"spec": True, "bundle": False, "runtime": False}, {"containerd": [tasks]}, {tasks: [get]})
    assert get in decision.add["containerd"]


def test_reached_and_incomplete_values_need_nothing_more():
    run = Run()
    run.enter(f"{M}/core/images.Config")
    run.leave(local('manifest.Annotations["k"]'))
    assert decide(run, {"runtime": True}, {"ctr": [f"{M}/core/images.Config"]}, {}).stops[V] == "reached the runtime"


def test_additions_stay_in_containerd_s_own_code_and_within_the_plan_limit():
    assert in_scope(f"{M}/core/images.Config", M)
    assert not in_scope("github.com/urfave/cli/v2.(*Context).StringSlice", M)
    assert not in_scope(f"{M}/core/images.Config.deferwrap1", M)
    run = Run()
    run.enter(f"{M}/client.A", arg("x"))
    run.leave(local("x"), results=("string",))
    table = {f"{M}/client.A": [f"{M}/client.B{i}" for i in range(30)]}
    plan = {"ctr": [f"{M}/client.A", *[f"{M}/client.P{i}" for i in range(MAX_PLAN - 6)]]}  # room for 5
    decision = decide(run, LOST_IN_CTR, plan, table)
    assert len(decision.add["ctr"]) == 5


def test_a_probe_hit_often_without_a_sentinel_is_pruned_and_never_added_again():
    from harness.graph.refine import PRUNE_HITS, prunable

    run = Run()
    for _ in range(PRUNE_HITS):
        run.enter(f"{M}/pkg/tracing.Attribute")
        run.leave()
        run.enter("os.(*File).Write")  # writes stay: a write without the value is evidence
        run.leave()
    run.enter(f"{M}/client.A", arg("x"))
    run.leave(local("x"), results=("string",))
    assert prunable(run.events) == {"ctr": [f"{M}/pkg/tracing.Attribute"]}
    table = {f"{M}/client.A": [f"{M}/pkg/tracing.Attribute", f"{M}/client.B"]}
    decision = decide(run, LOST_IN_CTR, {"ctr": [f"{M}/client.A", f"{M}/pkg/tracing.Attribute", "os.(*File).Write"]},
                      table)
    assert decision.prune == {"ctr": [f"{M}/pkg/tracing.Attribute"]}
    assert decision.add["ctr"] == [f"{M}/client.B"]


def test_a_candidate_that_kept_the_value_to_itself_is_not_pinned_before_the_writes_are_watched():
    # V ends in a local of client.A, which writes nothing anyone watched: an interface call could still
    # have handed V to a write, so every write of the process is probed before A is named.
    run = Run()
    run.enter(f"{M}/client.A", arg("x"))
    run.leave(local("x"), results=("error",))
    table = {f"{M}/client.A": []}
    every = {"ctr": {f"{M}/client.A", "os.(*File).Write", "google.golang.org/grpc.(*ClientConn).Invoke"}}
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.status == "dropped" and loc.candidates[0].function == f"{M}/client.A"
    decision = next_probes({V: loc}, run.events, {"ctr": [f"{M}/client.A"], "containerd": [], SHIM: []},
                           Index(table), SCOPE, every)
    assert set(decision.add["ctr"]) == {"os.(*File).Write", "google.golang.org/grpc.(*ClientConn).Invoke"}
    assert "kept it to itself" in decision.why[V][0]
    # With the writes watched (and none under A), A is pinned.
    watched = {"ctr": [f"{M}/client.A", "os.(*File).Write", "google.golang.org/grpc.(*ClientConn).Invoke"],
               "containerd": [], SHIM: []}
    decision = next_probes({V: loc}, run.events, watched, Index(table), SCOPE, every)
    assert V in decision.stops and decision.stops[V].startswith("pinned: client.A")


def test_a_write_that_held_the_value_is_never_followed_up_to_its_callers():
    # ctr's images.Config holds V and drops it; the daemon's stream SendMsg sent V out earlier (the blob
    # to ctr): the wrappers above that write are no lead for the drop.
    run = Run()
    run.stack.append(f"{M}/cmd/containerd/server.(*wrappedSSWithContext).SendMsg")  # not probed
    run.enter("google.golang.org/grpc.(*serverStream).SendMsg", arg("m.Data (bytes)"), process="containerd")
    run.leave(arg("m.Data (bytes)"), process="containerd")
    run.stack.pop()
    run.enter(f"{M}/core/images.Config")
    run.leave(local('manifest.Annotations["k"]'), results=("ocispec.Descriptor", "error"))
    plan = {"ctr": [f"{M}/core/images.Config"], "containerd": ["google.golang.org/grpc.(*serverStream).SendMsg"]}
    decision = decide(run, LOST_IN_CTR, plan, {})
    assert decision.stops[V].startswith("pinned: core/images.Config")
    assert decision.add["containerd"] == []


def test_sentinels_that_share_a_lead_do_not_widen_past_it():
    # Neither value was seen in ctr; where values enter ctr is the lead for both. The second one must
    # not fall through to widening because the first one queued that lead already.
    run = Run()
    run.enter(f"{M}/client.A")
    run.leave()
    other = V.replace("abcdef00", "abcdef01")
    locs = {v: localize(v, run.events, LOST_IN_CTR, scope=SCOPE) for v in (V, other)}
    assert {loc.status for loc in locs.values()} == {"not-seen"}
    entry = f"{M}/core/content.ReadBlob"
    table = {f"{M}/client.A": [f"{M}/client.B"]}
    every = {"ctr": {f"{M}/client.A", f"{M}/client.B", entry}, "containerd": set(), SHIM: set()}
    decision = next_probes(locs, run.events, {"ctr": [f"{M}/client.A"], "containerd": [], SHIM: []}, Index(table),
                           SCOPE, every, {"ctr": [entry]})
    assert decision.add["ctr"] == [entry]
    assert all(any("where values enter" in w for w in decision.why[v]) for v in (V, other))


def test_a_changed_form_is_followed_to_whoever_changed_it_even_when_a_candidate_is_named():
    # The bundle got V upper-cased; a later reader (Delete) kept V itself in its locals. The changer is
    # not probed yet: the caller of the first function that held the changed form is probed next.
    run = Run()
    run.stack.append(f"{M}/plugins/services/tasks.(*local).Create")  # not probed
    run.enter(f"{M}/core/runtime/v2.(*TaskManager).Create", arg("opts.Spec.Value (bytes)", match="case"),
              process="containerd")
    run.leave(arg("opts.Spec.Value (bytes)", match="case"), process="containerd", results=("Task", "error"))
    run.stack.pop()
    run.enter(f"{M}/core/runtime/v2.(*TaskManager).Delete", process="containerd")
    run.leave(local("container.Spec.Value (bytes)"), process="containerd", results=("*TaskExit", "error"))
    stages = {"spec": True, "bundle": False, "runtime": False}
    decision = decide(run, stages, {"containerd": [f"{M}/core/runtime/v2.(*TaskManager).Create",
                                                   f"{M}/core/runtime/v2.(*TaskManager).Delete"]}, {})
    assert f"{M}/plugins/services/tasks.(*local).Create" in decision.add["containerd"]
    assert V not in decision.stops


def test_no_widening_in_a_process_the_value_only_went_through():
    # The daemon read V from its store and sent it out (a stream write); ctr got it and handed it to an
    # unprobed caller. Leads are in ctr; the daemon is not widened.
    run = Run()
    run.enter(f"{M}/plugins/services/content/contentserver.(*service).Read", process="containerd")
    run.enter("google.golang.org/grpc.(*serverStream).SendMsg", arg("m.Data (bytes)"), process="containerd")
    run.leave(arg("m.Data (bytes)"), process="containerd")
    run.leave(local("p (bytes)"), process="containerd")
    run.stack.append(f"{M}/core/images.Manifest.func1")  # not probed
    run.enter(f"{M}/core/content.ReadBlob")
    run.leave(ret("~r0 (bytes)"), results=("[]uint8", "error"))
    table = {f"{M}/plugins/services/content/contentserver.(*service).Read": [f"{M}/core/content.(*store).ReaderAt"]}
    plan = {"ctr": [f"{M}/core/content.ReadBlob"],
            "containerd": [f"{M}/plugins/services/content/contentserver.(*service).Read",
                           "google.golang.org/grpc.(*serverStream).SendMsg"]}
    decision = decide(run, LOST_IN_CTR, plan, table)
    assert decision.add["ctr"] == [f"{M}/core/images.Manifest.func1"]
    assert decision.add["containerd"] == []
