"""The probe backend seam: one protocol, one registry, no backend names in the pipeline.

A backend is how a run watches containerd. The pipeline and the refinement loop only
call what the protocol offers and ask for capabilities:

    multi-pass    another pass can watch more functions (refinement adds probes)
    shim          it watches containerd-shim-runc-v2 from its start (the third process)
    memory-reads  a string or []byte cut by load limits is read in full
    closures      it sees the variables a function value captured
    variants      it finds changed forms of a sentinel (cut, another case, re-encoded)
    transcript    it can record the seed's terminal transcript

Every backend emits the events of harness/probes/events.py; what they mean is decided
downstream (harness/graph), without knowing which backend ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from harness.errors import HarnessError
from harness.probes.callindex import CallIndex
from harness.probes.passes import PassResult
from harness.probes.plan import ResolvedPlan
from harness.probes.processes import PROCESSES, watched


class ProbeBackend(Protocol):
    name: ClassVar[str]
    watches_code: ClassVar[bool]  # False: only the stage map (no probes, no localization)
    capabilities: ClassVar[frozenset[str]]

    def prepare(self, build, plan: ResolvedPlan | None):
        """Install what it needs; return the build to run (a backend may instrument it)."""

    def process_env(self, results_dir: Path, sentinels: list) -> dict[str, str]:
        """Environment for the daemon (and so for the shims it starts)."""

    def run_pass(self, context, number: int, plan: ResolvedPlan, state_dir: Path, container_id: str,
                 seq_start: int) -> PassResult:
        """Run the scenario's action once with the plan's probes; faults are recorded in the result."""

    def call_index(self, build) -> CallIndex:
        """Static callees of functions in the binaries it watches."""

    def tools(self) -> dict:
        """Versions of the tools it used, for the report."""

    def close(self) -> None:
        """End what it kept from pass to pass (the daemon's debugger): before the transcript, and on errors."""


@dataclass
class _Backend:
    """Shared defaults: an objdump call index over the build's binaries, no extra environment."""

    name: ClassVar[str] = ""
    watches_code: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset()
    tool: Path | None = None
    dlv: Path | None = None
    _index: CallIndex | None = field(default=None, repr=False)
    kept: dict = field(default_factory=dict, repr=False)  # sessions kept from pass to pass (the daemon's)

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def prepare(self, build, plan):
        from harness.toolchain.tools import install_delve

        self.dlv = install_delve()  # delve is the pinned debugger of every report (and the transcript's)
        return build

    def process_env(self, results_dir: Path, sentinels: list) -> dict[str, str]:
        return {}

    def call_index(self, build) -> CallIndex:
        if self._index is None:
            self._index = CallIndex({p: build.binary(watched(p).binary) for p in PROCESSES})
        return self._index

    def tools(self) -> dict:
        from harness.toolchain.tools import tool_versions

        return tool_versions(self.dlv, self.tool)

    def run_pass(self, context, number, plan, state_dir, container_id, seq_start) -> PassResult:
        raise HarnessError(f"backend {self.name} has no probe pass")

    def close(self) -> None:
        pass


class StateBackend(_Backend):
    name = "state"
    watches_code = False


class DelveBackend(_Backend):
    name = "delve"
    capabilities = frozenset({"multi-pass", "shim", "memory-reads", "closures", "variants", "transcript"})
    def run_pass(self, context, number, plan, state_dir, container_id, seq_start) -> PassResult:
        from harness.probes.delve.backend import DelveSession
        from harness.probes.passes import debugger_pass

        return debugger_pass(DelveSession, number, context.sandbox, context.scenario, context.sentinels,
                             context.reference, container_id, state_dir, self.dlv, plan, str(context.build.src_dir),
                             seq_start=seq_start, watch_shim=True, kept=self.kept)

    def close(self) -> None:
        session = self.kept.pop("containerd", None)
        if session is not None:
            session.__exit__(None, None, None)  # detach: the daemon runs on for the transcript and teardown

    def record_transcript(self, context, outcome, container_id: str) -> Path:
        from harness.probes.delve.transcript import record_transcript

        return record_transcript(context, outcome, container_id)


class GdbBackend(_Backend):
    name = "gdb"
    capabilities = frozenset({"multi-pass"})

    def prepare(self, build, plan):
        from harness.toolchain.tools import install_gdb

        build = super().prepare(build, plan)
        self.tool = install_gdb()
        return build

    def run_pass(self, context, number, plan, state_dir, container_id, seq_start) -> PassResult:
        from harness.probes.gdb.session import GdbSession, dwarf_info
        from harness.probes.passes import debugger_pass

        dwarf = {p: dwarf_info(context.build.binary(watched(p).binary), plan.functions[p]) for p in PROCESSES}
        return debugger_pass(GdbSession, number, context.sandbox, context.scenario, context.sentinels,
                             context.reference, container_id, state_dir, self.tool, plan, str(context.build.src_dir),
                             seq_start=seq_start,
                             session_options={"sentinels": [s.value for s in context.sentinels], "dwarf": dwarf})


class GotraceBackend(_Backend):
    name = "gotrace"
    capabilities = frozenset()  # instrumentation is compiled in: one pass per build

    def prepare(self, build, plan):
        from harness.probes.gotrace.build import build_instrumented

        build = super().prepare(build, plan)
        return build_instrumented(build, plan)  # same version and patches, the plan's functions instrumented

    def process_env(self, results_dir: Path, sentinels: list) -> dict[str, str]:
        from harness.probes.gotrace.run import trace_dir_for, trace_env

        return trace_env(trace_dir_for(results_dir), sentinels)  # the instrumented daemon traces from its start

    def run_pass(self, context, number, plan, state_dir, container_id, seq_start) -> PassResult:
        from harness.probes.gotrace.run import gotrace_pass

        return gotrace_pass(number, context.sandbox, context.scenario, context.sentinels, context.reference,
                            container_id, state_dir, plan, str(context.build.src_dir), seq_start=seq_start)


REGISTRY: dict[str, type[_Backend]] = {b.name: b for b in (StateBackend, DelveBackend, GdbBackend, GotraceBackend)}


def backend_named(name: str) -> _Backend:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise HarnessError(f"unknown backend {name!r}: use one of {', '.join(REGISTRY)}") from None
