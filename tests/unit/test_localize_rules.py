"""Unit tests for the rules of harness.graph.localize, one small made-up run each.

Each test builds the few events a rule needs (a call and a return per invocation, with the
stack and the sightings a probe would report) and checks the verdict the rule gives. The
recorded real runs are tested in test_localize.py and test_planted.py.
"""

from __future__ import annotations

from eventkit import V, Run, arg, captured, local, ret

from harness.graph.localize import Scope, localize
from harness.probes.events import Unreadable
from harness.versions import V2_LAYOUT, V2_MODULE

M = V2_MODULE
SCOPE = Scope.of(V2_LAYOUT)
LOST_IN_CTR = {"spec": False, "bundle": False, "runtime": False}


def test_a_value_in_a_local_that_the_function_does_not_return_is_dropped_there():
    run = Run()
    run.enter(f"{M}/core/images.(*Image).Config")
    run.enter(f"{M}/core/images.Config")
    run.leave(local('manifest.Annotations["k"]'), results=("ocispec.Descriptor", "error"))
    run.leave()
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.status == "dropped"
    assert loc.drop.function == f"{M}/core/images.Config"
    assert "the value ended in its own variables" in loc.drop.reasons


def test_a_callee_that_only_read_the_value_is_not_blamed_when_its_caller_passed_it_on():
    run = Run()
    run.enter(f"{M}/client.(*Client).NewContainer", arg('c.Labels["k"]'))
    run.enter(f"{M}/client.validate", arg('c.Labels["k"]'))
    run.leave(arg('c.Labels["k"]'), results=("string", "error"))
    run.leave(arg('c.Labels["k"]'), ret('~r0.Labels["k"]'), results=("Container", "error"))
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.status == "unresolved"  # passed up to a caller nobody probed; validate is not a candidate
    assert loc.candidates == []


def test_a_transformer_that_keeps_its_input_but_returns_data_without_the_value_is_the_drop():
    run = Run()
    run.enter(f"{M}/cmd/ctr/commands/run.NewContainer")
    run.enter(f"{M}/cmd/ctr/commands.AnnotationArgs", arg("annoStrings[0]"))
    run.leave(arg("annoStrings[0]"), results=("map[string]string", "error"))
    run.leave(results=("Container", "error"))
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.drop.function == f"{M}/cmd/ctr/commands.AnnotationArgs"


def test_a_reader_of_a_big_value_that_carries_the_value_deep_inside_is_never_named():
    run = Run()
    run.enter(f"{M}/cmd/ctr/commands.getRuncOptions", arg("cliContext.parentContext.flagSet.args[5]"))
    run.leave(arg("cliContext.parentContext.flagSet.args[5]"), results=("*Options", "error"))
    assert localize(V, run.events, LOST_IN_CTR, scope=SCOPE).status == "unresolved"


def test_a_closure_that_captured_the_value_and_did_not_write_it_into_the_spec_is_the_drop():
    closure = f"{M}/pkg/oci.WithAnnotations.func1"
    run = Run()
    run.enter(f"{M}/pkg/oci.ApplyOpts", arg('opts[5]{x}.annotations["k"]', closures=(closure,)))
    run.enter(closure)
    run.leave(captured('annotations["k"]'))  # s has no V at return
    run.leave(arg('opts[5]{x}.annotations["k"]', closures=(closure,)))
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.drop.function == closure


def test_a_closure_writing_the_value_into_a_variable_it_captured_by_reference_passes_it_up():
    closure = f"{M}/core/images.Manifest.func1"
    run = Run()
    run.enter(f"{M}/core/images.Manifest")
    run.enter(closure)
    run.leave(local('m[0].m.Annotations["k"]'), captured=("m",))
    run.leave(local('m[0].m.Annotations["k"]'), ret('~r0.Annotations["k"]'), results=("ocispec.Manifest", "error"))
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    manifest_func1 = next(h for h in loc.handlings if h.invocation.function == closure)
    assert manifest_func1.up and not manifest_func1.terminal


def test_a_changed_value_is_a_drop_where_it_was_changed_with_both_values_as_evidence():
    run = Run()
    run.enter(f"{M}/plugins/services/tasks.(*local).Create", process="containerd")
    run.enter(f"{M}/plugins/services/tasks.(*local).getContainer", process="containerd")
    run.leave(ret("~r0.Spec.Value (bytes)"), process="containerd", results=("*Container", "error"))
    run.enter(f"{M}/core/runtime/v2.(*TaskManager).Create", arg("opts.Spec.Value (bytes)", match="case"),
              process="containerd")
    run.leave(arg("opts.Spec.Value (bytes)", match="case"), process="containerd", results=("Task", "error"))
    run.leave(process="containerd", results=("*CreateTaskResponse", "error"))
    loc = localize(V, run.events, {"spec": True, "bundle": False, "runtime": False}, scope=SCOPE)
    drop = loc.drop
    assert drop.function == f"{M}/plugins/services/tasks.(*local).Create" and drop.process == "containerd"
    evidence = drop.evidence(f"k={V}")
    assert "came back from" in evidence and "changed" in evidence and V.upper() in evidence


def test_a_function_whose_own_write_lacks_the_value_is_the_drop_though_its_caller_returned_it():
    run = Run()
    run.enter(f"{M}/core/metadata.(*containerStore).Create", arg("container.Spec.Value (bytes)"), process="containerd")
    run.enter(f"{M}/core/metadata.writeContainer", arg("container.Spec.Value (bytes)"), process="containerd")
    run.enter("go.etcd.io/bbolt.(*Bucket).Put", process="containerd")
    run.leave(process="containerd")
    run.leave(arg("container.Spec.Value (bytes)"), process="containerd")
    run.leave(arg("container.Spec.Value (bytes)"), ret("~r0.Spec.Value (bytes)"), process="containerd",
              results=("Container", "error"))
    loc = localize(V, run.events, {"spec": False, "bundle": False, "runtime": False}, scope=SCOPE)
    assert loc.drop.function == f"{M}/core/metadata.writeContainer"
    assert "wrote without the value" in loc.drop.reasons


def test_a_write_made_by_a_library_such_as_a_logger_is_not_the_function_s_own():
    run = Run()
    run.enter(f"{M}/core/metadata.validateContainer", arg('container.Labels["k"]'), process="containerd")
    run.enter("github.com/sirupsen/logrus.(*Entry).write", process="containerd")
    run.enter("os.(*File).Write", process="containerd")
    run.leave(process="containerd")
    run.leave(process="containerd")
    run.leave(arg('container.Labels["k"]'), process="containerd")
    loc = localize(V, run.events, {"spec": False, "bundle": False, "runtime": False}, scope=SCOPE)
    [handling] = loc.handlings
    assert handling.wrote_without == []


def test_a_write_made_before_the_value_came_in_is_not_a_write_without_it():
    # ReadBlob asks for the blob's size (a request without V) and only then reads V: that request
    # was made before V was there, so it is no evidence; V handed back to its caller is what counts.
    run = Run()
    run.enter(f"{M}/core/content.ReadBlob")
    run.enter("google.golang.org/grpc.(*ClientConn).Invoke")
    run.leave()
    run.enter("os.ReadFile")
    run.leave(ret("~r0 (bytes)"), results=("[]uint8", "error"))
    run.enter("os.(*File).Write")  # after V came back from the read: a write without it
    run.leave()
    run.leave(ret("~r0 (bytes)"), results=("[]uint8", "error"))
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    [handling] = [h for h in loc.handlings if h.invocation.function == f"{M}/core/content.ReadBlob"]
    assert handling.wrote_without == ["with os.(*File).Write without it"]


def test_a_closure_that_lost_what_it_captured_is_named_before_the_caller_that_then_wrote_without_it():
    # NewContainer holds an option closure that captured V, applies it (the closure drops V), then
    # sends the container without V: its write lacks V because the closure lost it.
    run = Run()
    run.enter(f"{M}/client.(*Client).NewContainer", arg("opts[1]{pkg/oci.WithAnnotations.func1}.annotations[\"k\"]"))
    run.enter(f"{M}/pkg/oci.WithAnnotations.func1")
    run.leave(captured('annotations["k"]'))
    run.enter("google.golang.org/grpc.(*ClientConn).Invoke")
    run.leave()
    run.leave(arg("opts[1]{pkg/oci.WithAnnotations.func1}.annotations[\"k\"]"), results=("Container", "error"))
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.status == "dropped"
    assert [c.function for c in loc.candidates] == [f"{M}/pkg/oci.WithAnnotations.func1"]


def _sent(path_in_daemon: str) -> Run:
    # ctr builds the spec without V (a candidate that wrote without it), sends V in the request all the
    # same (as a label, or inside the spec), and the daemon's handler receives it there.
    run = Run()
    run.enter(f"{M}/pkg/oci.WithImageConfigArgs.func1", arg('image.Config.Labels["k"]'))
    run.enter("google.golang.org/grpc.(*ClientConn).Invoke")
    run.leave()
    run.leave(arg('image.Config.Labels["k"]'))
    run.enter("google.golang.org/grpc.(*ClientConn).Invoke", arg('args.Container.Labels["k"]'))
    run.leave(arg('args.Container.Labels["k"]'))
    run.enter(f"{M}/plugins/services/containers.(*local).Create", arg(path_in_daemon), process="containerd")
    run.leave(arg(path_in_daemon), process="containerd", results=("*CreateContainerResponse", "error"))
    return run


def test_a_value_sent_on_as_a_label_was_not_sent_in_the_spec():
    loc = localize(V, _sent('req.Container.Labels["k"]').events, LOST_IN_CTR, scope=SCOPE)
    assert loc.search == ("ctr", "containerd")
    assert loc.drop.function == f"{M}/pkg/oci.WithImageConfigArgs.func1"


def test_a_value_the_next_process_received_in_the_spec_was_lost_there_not_by_the_sender():
    loc = localize(V, _sent("req.Container.Spec.Value (bytes)").events, LOST_IN_CTR, scope=SCOPE)
    assert loc.search == ("containerd",)
    assert loc.drop is None or loc.drop.process == "containerd"


def test_a_function_that_passed_the_value_on_in_other_invocations_ranks_below_one_that_always_lost_it():
    # The daemon's content Read sent the blob out four times and once not (the reader stopped early);
    # ctr's Config lost the annotation every time it held it: Config is named.
    run = Run()
    for sent in (True, True, False):
        run.enter(f"{M}/plugins/services/content/contentserver.(*service).Read", process="containerd")
        if sent:
            run.enter("google.golang.org/grpc.(*serverStream).SendMsg", arg("m.Data (bytes)"), process="containerd")
            run.leave(arg("m.Data (bytes)"), process="containerd")
        run.leave(local("p (bytes)"), process="containerd")
    run.enter(f"{M}/core/images.Config")
    run.leave(local('manifest.Annotations["k"]'), results=("ocispec.Descriptor", "error"))
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.drop.function == f"{M}/core/images.Config"
    read = next(c for c in loc.candidates if c.function.endswith("contentserver.(*service).Read"))
    assert "passed the value on in other invocations" in read.reasons


def test_what_a_callee_hands_back_through_unprobed_frames_is_not_the_caller_s():
    run = Run()
    run.enter(f"{M}/pkg/oci.ApplyOpts")
    run.stack.append(f"{M}/core/images.Config")  # not probed: on the stack only
    run.enter(f"{M}/core/images.Manifest")
    run.leave(ret('~r0.Annotations["k"]'), results=("ocispec.Manifest", "error"))
    run.stack.pop()
    run.leave()
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert [h.invocation.function for h in loc.handlings] == [f"{M}/core/images.Manifest"]
    assert loc.status == "unresolved"


def test_a_drop_upstream_of_a_stage_that_still_had_the_value_is_never_named():
    run = Run()
    run.enter(f"{M}/core/runtime/v2.NewBundle", arg("spec.Value (bytes)"), process="containerd")
    run.leave(arg("spec.Value (bytes)"), process="containerd", results=("*Bundle", "error"))
    loc = localize(V, run.events, {"spec": True, "bundle": True, "runtime": False}, scope=SCOPE)
    assert loc.status == "unresolved"
    assert loc.search == ("containerd-shim-runc-v2",)
    assert loc.candidates and not loc.candidates[0].valid


def test_an_output_that_could_not_be_read_makes_the_function_unknown_not_the_drop():
    run = Run()
    run.enter(f"{M}/pkg/oci.WithAnnotations", arg('annotations["k"]'))
    cut = Unreadable("return", "~r0{f}.annotations", "truncated", "map", 0, 1, vtype="map[string]string")
    run.leave(arg('annotations["k"]'), results=("SpecOpts",), unreadable=[cut])
    loc = localize(V, run.events, LOST_IN_CTR, scope=SCOPE)
    assert loc.status == "unresolved"
    assert any("could not be read" in u for u in loc.unknown)


def test_library_functions_are_never_named():
    run = Run()
    run.enter("encoding/json.Unmarshal", arg("data (bytes)"))
    run.leave(arg("data (bytes)"))
    assert localize(V, run.events, LOST_IN_CTR, scope=SCOPE).status == "unresolved"


def test_a_value_the_runtime_got_has_no_drop_and_a_fault_makes_it_incomplete():
    run = Run()
    run.enter(f"{M}/core/images.Config")
    run.leave(local('manifest.Annotations["k"]'))
    assert localize(V, run.events, {"runtime": True}, scope=SCOPE).status == "reached"
    assert localize(V, run.events, False, scope=SCOPE, fault="delve died").status == "incomplete"
    assert localize(V, run.events, None, scope=SCOPE).status == "incomplete"
    assert localize("never-there", run.events, False, scope=SCOPE).status == "not-seen"
