"""Compare two verdicts of the same scenario: what moved, appeared, disappeared or changed stage.

A change is *failing* when it changes what the tool concludes: the outcome of the
run, a stage a sentinel was (not) seen at, the localization status, or the drop
function. A drop that stays in the same function but moves to another line (an
unrelated edit above it) is reported as a note and does not fail unless
`strict_lines` asks for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.image.scenario import STAGES
from harness.regress.verdict import RunVerdict, SentinelVerdict
from harness.versions import canonical_file

@dataclass(frozen=True)
class Change:
    kind: str  # outcome-changed | sentinel-missing | sentinel-added | stage-changed | status-changed |
    #            drop-moved | drop-appeared | drop-disappeared | line-moved
    sentinel: str  # "source:key", or "" for the whole run
    before: str
    after: str
    failing: bool = True

    def describe(self) -> str:
        subject = f"{self.sentinel}: " if self.sentinel else ""
        return f"{subject}{self.kind}: {self.before} -> {self.after}"

    def to_dict(self) -> dict:
        return asdict(self)


def _stages(verdict: SentinelVerdict) -> str:
    seen = [stage for stage in STAGES if verdict.stages.get(stage)]
    unknown = [stage for stage in STAGES if verdict.stages.get(stage) is None]
    text = ",".join(seen) or "nowhere"
    return text + (f" (unknown: {','.join(unknown)})" if unknown else "")


def compare_sentinels(before: SentinelVerdict, after: SentinelVerdict, strict_lines: bool = False,
                      modules: tuple[str, str] = ("", "")) -> list[Change]:
    """Changes of one sentinel; `modules` (before, after) put files of v1 and v2 builds in one layout."""
    ident = before.ident
    changes = []
    if before.stages != after.stages:
        changes.append(Change("stage-changed", ident, _stages(before), _stages(after)))
    if before.status != after.status:
        changes.append(Change("status-changed", ident, str(before.status), str(after.status)))
    if before.drop_function != after.drop_function:
        if before.drop_function is None:
            kind = "drop-appeared"
        elif after.drop_function is None:
            kind = "drop-disappeared"
        else:
            kind = "drop-moved"
        changes.append(Change(kind, ident, before.drop_at, after.drop_at))
    elif ((canonical_file(before.drop_file, modules[0]), before.drop_line)
          != (canonical_file(after.drop_file, modules[1]), after.drop_line)):
        changes.append(Change("line-moved", ident, before.drop_at, after.drop_at, failing=strict_lines))
    return changes


def compare_runs(before: RunVerdict, after: RunVerdict, strict_lines: bool = False) -> list[Change]:
    """Every difference between a baseline (`before`) and a new run (`after`) of one scenario."""
    if before.outcome != after.outcome or (before.outcome != "ok" and before.reason != after.reason):
        return [Change("outcome-changed", "", _outcome(before), _outcome(after))]
    changes: list[Change] = []
    old, new = before.by_ident(), after.by_ident()
    for ident, verdict in old.items():
        if ident not in new:
            changes.append(Change("sentinel-missing", ident, verdict.furthest_stage or "nowhere", "not in the run"))
            continue
        changes.extend(compare_sentinels(verdict, new[ident], strict_lines, (before.module, after.module)))
    for ident in new.keys() - old.keys():
        changes.append(Change("sentinel-added", ident, "not in the baseline", new[ident].furthest_stage or "nowhere"))
    return changes


def _outcome(verdict: RunVerdict) -> str:
    return verdict.outcome if verdict.outcome == "ok" else f"{verdict.outcome} ({verdict.reason})"


def differs(before: RunVerdict, after: RunVerdict, strict_lines: bool = False) -> bool:
    """True when any failing change separates the two verdicts (the rule check and bisect use)."""
    return any(change.failing for change in compare_runs(before, after, strict_lines))


def render_diff(before: RunVerdict, after: RunVerdict, changes: list[Change]) -> str:
    """A readable diff, one line per change, with a header naming both sides."""
    head = (f"--- baseline {before.scenario} on containerd {before.version} ({before.backend})\n"
            f"+++ this run {after.scenario} on containerd {after.version} ({after.backend})"
            + (f" with patches {', '.join(after.patches)}" if after.patches else ""))
    if not changes:
        return head + "\n  verdicts match"
    lines = [head]
    for change in changes:
        mark = "!" if change.failing else "~"
        lines.append(f"{mark} {change.describe()}")
    return "\n".join(lines)
