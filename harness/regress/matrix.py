"""The matrix: scenarios x containerd versions -> where each sentinel got to and where it was dropped."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table

from harness.regress.runner import Evaluation
from harness.regress.verdict import RunVerdict



def parse_versions(text: str) -> tuple[str, ...]:
    from harness.errors import HarnessError

    versions = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not versions:
        raise HarnessError("--containerd needs at least one version: e.g. v1.7,v2.1,latest")
    return versions


def _cell(verdict: RunVerdict, ident: str) -> tuple[str, str]:
    """(furthest stage, drop point) of one sentinel, or the run's outcome when it did not run."""
    if verdict.outcome != "ok":
        return verdict.outcome, verdict.reason
    sentinel = verdict.by_ident().get(ident)
    if sentinel is None:
        return "-", "-"
    stage = sentinel.furthest_stage or "nowhere"
    if sentinel.reached_runtime:
        stage = "runtime"
    status = f" [{sentinel.status}]" if sentinel.status and sentinel.status not in ("dropped", "reached") else ""
    return stage + status, sentinel.drop_at


def rows(evaluations: list[Evaluation]) -> list[dict]:
    """One row per (scenario, version, sentinel); a run that did not happen is one row."""
    out = []
    for evaluation in evaluations:
        verdict = evaluation.verdict
        idents = [s.ident for s in verdict.sentinels] or [""]
        for ident in idents:
            stage, drop = _cell(verdict, ident)
            out.append({"scenario": verdict.scenario, "requested": evaluation.requested, "version": verdict.version,
                        "sentinel": ident, "furthest_stage": stage, "drop": drop})
    return out


def matrix_table(evaluations: list[Evaluation]) -> Table:
    table = Table(title="containerd versions x sentinels: furthest stage reached and drop point", title_justify="left")
    for column in ("scenario", "version", "sentinel", "furthest stage", "drop point (function in v2 names, file:line of that version)"):
        table.add_column(column, overflow="fold")
    for row in rows(evaluations):
        style = "red" if row["furthest_stage"] in ("error", "unsupported") else None
        table.add_row(row["scenario"], f"{row['version']}" + (f" ({row['requested']})" if row["requested"] != row["version"] else ""),
                      row["sentinel"], row["furthest_stage"], row["drop"], style=style)
    return table


def timing(evaluations: list[Evaluation], wall_seconds: float) -> dict:
    builds = [e for e in evaluations if e.build_reused is not None]
    return {
        "wall_seconds": round(wall_seconds, 1),
        "build_seconds": round(sum(e.build_seconds for e in evaluations), 1),
        "run_seconds": round(sum(e.run_seconds for e in evaluations), 1),
        "builds_done": sum(1 for e in builds if not e.build_reused),
        "builds_reused": sum(1 for e in builds if e.build_reused),
        "cache": "cold" if any(not e.build_reused for e in builds) else "warm",
    }


def matrix_markdown(evaluations: list[Evaluation], document: dict) -> str:
    lines = [
        "# annotrace matrix",
        "",
        f"Command: `{document['command']}`",
        "",
        f"Backend: {document['backend']}. Wall time {document['timing']['wall_seconds']} s "
        f"({document['timing']['cache']} cache: {document['timing']['builds_done']} builds done, "
        f"{document['timing']['builds_reused']} reused; {document['timing']['build_seconds']} s building, "
        f"{document['timing']['run_seconds']} s running).",
        "",
        "Drop points name functions as in containerd's v2 layout (`core/images.Config`) so versions compare;",
        "the file and line are those of the version's own source.",
        "",
        "| scenario | version | sentinel | furthest stage | drop point |",
        "|---|---|---|---|---|",
    ]
    for row in rows(evaluations):
        version = row["version"] + (f" ({row['requested']})" if row["requested"] != row["version"] else "")
        drop = row["drop"].replace("|", "\\|")
        lines.append(f"| {row['scenario']} | {version} | {row['sentinel']} | {row['furthest_stage']} | {drop} |")
    lines += ["", "## Per version", ""]
    for evaluation in evaluations:
        t = evaluation
        lines.append(f"- {t.verdict.scenario} on {t.verdict.version}: {t.verdict.outcome}; build {t.build_seconds:.1f} s"
                     f" ({'reused' if t.build_reused else 'built' if t.build_reused is not None else 'none'}),"
                     f" run {t.run_seconds:.1f} s; results {t.results_dir or '-'}")
    return "\n".join(lines) + "\n"


def write_matrix(directory: Path, evaluations: list[Evaluation], document: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "matrix.json").write_text(json.dumps(document, indent=2) + "\n")
    (directory / "matrix.md").write_text(matrix_markdown(evaluations, document))


def new_results_dir(root: Path, kind: str) -> Path:
    """<root>/<timestamp>-<kind>-<hex> for a command that runs many scenarios (matrix, check)."""
    import secrets

    return (root / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}").resolve()
