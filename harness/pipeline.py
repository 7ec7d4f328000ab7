"""One run of a scenario, end to end: build -> sandbox -> image -> action (probed) -> stage map -> verdict.

Each stage is its own module; this file only wires them and decides what is kept
in the run's results directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from harness.actions import StateReader, deliver, run_action
from harness.allowlist import mark_sentinels, read_allow_list
from harness.console import step
from harness.errors import HarnessError
from harness.image.layout import write_layout
from harness.image.scenario import Scenario
from harness.paths import results_root
from harness.report.markdown import machine_environment
from harness.report.stagetable import render_plain
from harness.probes.backends import backend_named
from harness.sandbox import Registry, Sandbox
from harness.stagemap import load_documents, save_content, stage_map
from harness.toolchain import build_containerd
from harness.versions import DEFAULT_VERSION



@dataclass
class RunOptions:
    version: str | None = None  # None: the scenario's pin, else DEFAULT_VERSION
    patches: tuple[Path, ...] = ()
    keep_sandbox: bool = False
    registry_port: int | None = None
    nonce: str | None = None
    backend: str = "delve"
    probes: tuple[str, ...] = ()  # --probe [PROCESS:]REGEX
    probe_only: bool = False  # only the --probe patterns, not the default plan
    max_passes: int = 8
    transcript: bool = True
    plan: str = "default"  # default | empty (see harness/probes/plan.py)


@dataclass
class RunContext:
    """What the probe step needs to know about the run in progress."""

    scenario: Scenario
    build: object
    dlv: Path
    sandbox: Sandbox
    reference: str
    results_dir: Path
    sentinels: list
    run_id: str
    tool: Path | None = None  # the backend's debugger (gdb), when it is not delve


def require_root() -> None:
    if os.geteuid() != 0:
        raise HarnessError("annotrace run must be started as root: containerd, runc and overlay mounts need it (try sudo)")


def _display_path(path: Path) -> str:
    """Relative to the working directory when under it (results/runs/<id>), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def new_run_id(scenario: Scenario) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{scenario.name}-{secrets.token_hex(3)}"


def run_scenario(scenario: Scenario, options: RunOptions) -> dict:
    """Run `scenario` for real and return the --json document (also saved as result.json)."""
    require_root()
    backend = backend_named(options.backend)
    version = options.version or scenario.containerd or DEFAULT_VERSION
    build = build_containerd(version, list(options.patches))
    fix = read_allow_list(options.patches)  # what an applied fix declares: allow-list, its own functions
    plan = None
    if backend.watches_code:
        from harness.investigate import resolve_run_plan

        if options.probe_only and not options.probes:
            raise HarnessError("--probe-only needs at least one --probe PATTERN")
        probes = options.probes + (fix.probes if fix and not options.probe_only else ())  # watch the fix too
        # Bad patterns fail before anything starts.
        plan = resolve_run_plan(build, scenario, probes, only=options.probe_only, plan_name=options.plan)
    build = backend.prepare(build, plan)  # tools installed; gotrace returns its instrumented build
    run_id = new_run_id(scenario)
    results_dir = (results_root() / run_id).resolve()
    results_dir.mkdir(parents=True)
    step(f"results go to {results_dir}")
    shutil.copy(build.directory / "build.json", results_dir / "build.json")
    if scenario.path is not None:
        shutil.copy(scenario.path, results_dir / "scenario.toml")
    sentinels = scenario.sentinels(options.nonce)
    (results_dir / "sentinels.json").write_text(json.dumps([s.to_dict() for s in sentinels], indent=2) + "\n")
    container_id = f"{scenario.name}-{run_id[-6:]}"
    probe_outcome = None

    with ExitStack() as stack:
        image_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="annotrace-image-", dir="/var/tmp")))
        registry = None
        if scenario.image.delivery == "registry":
            registry = stack.enter_context(Registry(results_dir, options.registry_port))
        daemon_env = backend.process_env(results_dir, sentinels)
        sandbox = stack.enter_context(
            Sandbox(build, results_dir, namespace=f"annotrace-{run_id[-6:]}", keep=options.keep_sandbox,
                    daemon_env=daemon_env)
        )
        layout = write_layout(scenario, sentinels, image_dir / "layout", registry.host if registry else "")
        (results_dir / "image.json").write_text(json.dumps(layout.to_dict(), indent=2) + "\n")
        reference = deliver(sandbox, scenario, layout, registry)
        reader = StateReader(sandbox)
        records = reader.images()
        (results_dir / "image-records.json").write_text(json.dumps(records, indent=2) + "\n")
        record = next((r for r in records if r["name"] == reference), None)
        if record is None:
            raise HarnessError(f"the daemon has no image record named {reference} after delivery; see {results_dir}")
        platform = scenario.image.platforms[0] if len(scenario.image.platforms) == 1 else None
        save_content(reader, record, results_dir / "state", platform)
        if not backend.watches_code:
            action = run_action(sandbox, scenario, sentinels, reference, container_id, results_dir / "state")
        else:
            from harness.investigate import probe_and_localize

            context = RunContext(scenario, build, backend.dlv, sandbox, reference, results_dir, sentinels, run_id,
                                 backend.tool)
            probe_outcome = probe_and_localize(context, plan, container_id, options, backend)
            action = probe_outcome.action
        (results_dir / "action.json").write_text(json.dumps(action.to_dict() if action else {}, indent=2) + "\n")

    mapped = stage_map(sentinels, load_documents(results_dir))
    sentinel_docs = [m.to_dict() for m in mapped]
    if probe_outcome is not None:
        probe_outcome.fill(sentinel_docs)
    mark_sentinels(sentinel_docs, fix)
    document = {
        "containerd": build.contract(),
        "scenario": scenario.name,
        "backend": options.backend,
        "tools": backend.tools(),
        "environment": machine_environment(),
        "action": {"kind": scenario.action.kind, "exit_code": action.exit_code if action else None,
                   "container_id": container_id, "image": reference, "delivery": scenario.image.delivery},
        "sentinels": sentinel_docs,
        "results_dir": _display_path(results_dir),
    }
    if probe_outcome is not None:
        document["probe"] = probe_outcome.summary()
    if fix is not None:
        document["allow_list"] = fix.to_dict()
    if "instrumented" in build.manifest:
        instrumented = build.manifest["instrumented"]
        document["instrumented"] = {"build_dir": str(build.directory), "reused": build.reused,
                                    "build_seconds": None if build.reused else instrumented["build_seconds"],
                                    "missing": instrumented["report"].get("missing", [])}
    (results_dir / "result.json").write_text(json.dumps(document, indent=2) + "\n")
    (results_dir / "stage-map.txt").write_text(render_plain(document))
    if probe_outcome is not None:
        probe_outcome.write_report(document, results_dir)
    return document
