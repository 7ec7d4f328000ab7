"""Unit tests for the probe backend seam (harness/probes/backends.py) and the watched processes."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.probes import BACKENDS, PROBE_BACKENDS
from harness.probes.backends import REGISTRY, backend_named
from harness.probes.processes import PROCESSES, WATCHED, watched
from harness.versions import V1_LAYOUT, V2_LAYOUT


def test_the_registry_is_the_one_list_of_backends():
    assert tuple(REGISTRY) == BACKENDS
    assert tuple(name for name, cls in REGISTRY.items() if cls.watches_code) == PROBE_BACKENDS


def test_what_a_backend_can_do_is_a_capability_it_declares():
    delve, gdb, gotrace, state = (backend_named(n) for n in ("delve", "gdb", "gotrace", "state"))
    assert {"multi-pass", "shim", "memory-reads", "closures", "variants", "transcript"} <= delve.capabilities
    assert delve.has("multi-pass") and gdb.has("multi-pass") and not gotrace.has("multi-pass")
    assert not state.watches_code and not state.capabilities


def test_an_unknown_backend_is_bad_input():
    with pytest.raises(HarnessError, match="unknown backend 'lldb': use one of state, delve, gdb, gotrace"):
        backend_named("lldb")


def test_three_processes_each_started_its_own_way():
    assert PROCESSES == ("ctr", "containerd", "containerd-shim-runc-v2")
    assert [p.start for p in WATCHED] == ["exec", "attach", "on-start"]
    assert watched("containerd-shim-runc-v2").binary == "containerd-shim-runc-v2"


@pytest.mark.parametrize("layout", [V1_LAYOUT, V2_LAYOUT], ids=lambda l: l.name)
def test_every_layout_has_both_plans_and_the_stage_table_for_every_process(layout):
    assert set(layout.probes) == set(PROCESSES) == set(layout.entries)
    assert layout.stage_processes == {"container-labels": ("ctr", "containerd"), "spec": ("ctr", "containerd"),
                                      "bundle": ("containerd",), "runtime": ("containerd-shim-runc-v2",)}
    assert {(j.client_process, j.server_process) for j in layout.rpc_joins} == {
        ("ctr", "containerd"), ("containerd", "containerd-shim-runc-v2")}
    # The empty plan names no function of containerd's image, spec, container or task code.
    for patterns in layout.entries.values():
        assert not any(word in p for p in patterns for word in ("images", "oci", "NewBundle", "metadata", "tasks"))


def test_a_scenario_may_probe_every_watched_process():
    from harness.image.scenario import PROBE_PROCESSES

    assert PROBE_PROCESSES == PROCESSES
