"""One run of a scenario, end to end: build -> sandbox -> image -> action -> stage map.

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
from harness.console import step
from harness.errors import HarnessError
from harness.image.layout import write_layout
from harness.image.scenario import Scenario
from harness.paths import results_root
from harness.report.stagetable import render_plain
from harness.sandbox import Registry, Sandbox
from harness.stagemap import load_documents, save_content, stage_map
from harness.toolchain import build_containerd
from harness.toolchain.tools import install_delve, tool_versions
from harness.versions import DEFAULT_VERSION


@dataclass
class RunOptions:
    version: str | None = None  # None: the scenario's pin, else DEFAULT_VERSION
    patches: tuple[Path, ...] = ()
    keep_sandbox: bool = False
    registry_port: int | None = None
    nonce: str | None = None


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
    version = options.version or scenario.containerd or DEFAULT_VERSION
    build = build_containerd(version, list(options.patches))
    dlv = install_delve()
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

    with ExitStack() as stack:
        image_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="annotrace-image-", dir="/var/tmp")))
        registry = None
        if scenario.image.delivery == "registry":
            registry = stack.enter_context(Registry(results_dir, options.registry_port))
        sandbox = stack.enter_context(
            Sandbox(build, results_dir, namespace=f"annotrace-{run_id[-6:]}", keep=options.keep_sandbox)
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
        action = run_action(sandbox, scenario, sentinels, reference, container_id, results_dir / "state")
        (results_dir / "action.json").write_text(json.dumps(action.to_dict(), indent=2) + "\n")

    mapped = stage_map(sentinels, load_documents(results_dir))
    document = {
        "containerd": build.contract(),
        "scenario": scenario.name,
        "backend": "state",
        "tools": tool_versions(dlv),
        "action": {"kind": scenario.action.kind, "exit_code": action.exit_code, "container_id": container_id,
                   "image": reference, "delivery": scenario.image.delivery},
        "sentinels": [m.to_dict() for m in mapped],
        "results_dir": _display_path(results_dir),
    }
    (results_dir / "result.json").write_text(json.dumps(document, indent=2) + "\n")
    (results_dir / "stage-map.txt").write_text(render_plain(document))
    return document
