"""One probe pass under delve (the generic pass is harness/probes/passes.py)."""

from __future__ import annotations

from pathlib import Path

from harness.probes.delve.backend import DelveSession
from harness.probes.passes import PassResult, debugger_pass


def delve_pass(index: int, sandbox, scenario, sentinels, reference: str, container_id: str, state_dir: Path,
               dlv: Path, plan, source_root: str, seq_start: int = 0) -> PassResult:
    return debugger_pass(DelveSession, index, sandbox, scenario, sentinels, reference, container_id, state_dir,
                         dlv, plan, source_root, seq_start)


__all__ = ["PassResult", "delve_pass"]
