"""The stage map: at which stages each sentinel is present, read from real state.

Stages (flow order) and where each is read:
  index             the image index blob in the daemon's content store
  manifest          the manifest blob (host platform) in the content store
  config            the image config blob in the content store
  image-record      the daemon's image record (labels, target descriptor)
  container-labels  the container record's labels (read while the task ran)
  spec              the container record's OCI spec (read while the task ran)
  bundle            the bundle's config.json as the daemon wrote it (kept by the shim wrapper
                    when the daemon started the shim; older runs: read while the task ran)
  runtime           config.json exactly as the runtime binary received it (recorder),
                    plus /urunc.json from the rootfs it was handed, base64-decoded

A stage is True or False when it was observed, None when it could not be read
(for example, a container that exited before its record could be read).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.image.scenario import STAGES, Sentinel, host_platform
from harness.sandbox.recorder import RUNTIME_ACTIONS, recordings_in

MEDIA_INDEXES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass
class StageDocument:
    """One piece of real state that belongs to a stage."""

    stage: str
    label: str  # where it came from, for people
    data: Any  # parsed JSON
    decode_base64: bool = False  # urunc.json values are base64


@dataclass
class SentinelStages:
    sentinel: Sentinel
    stages: dict[str, bool | None]
    seen: dict[str, list[str]] = field(default_factory=dict)  # stage -> variable paths

    @property
    def reached_runtime(self) -> bool:
        return bool(self.stages.get("runtime"))

    @property
    def furthest_stage(self) -> str | None:
        reached = [stage for stage in STAGES if self.stages.get(stage)]
        return reached[-1] if reached else None

    def to_dict(self) -> dict:
        return {
            **self.sentinel.to_dict(),
            "stages": dict(self.stages),
            "seen": self.seen,
            "furthest_stage": self.furthest_stage,
            "reached_runtime": self.reached_runtime,
            "drop": None,  # filled by localization (probes + call graph)
        }


def _key(name: str) -> str:
    return f"[{json.dumps(name)}]"


def find_paths(data: Any, value: str, decode_base64: bool = False, path: str = "") -> list[str]:
    """Every path in a JSON document whose string contains `value`, e.g. annotations["k"]."""
    found: list[str] = []
    if isinstance(data, dict):
        for name, item in data.items():
            if not name.isidentifier():
                child = f"{path}{_key(name)}"
            else:
                child = f"{path}.{name}" if path else name
            found += find_paths(item, value, decode_base64, child)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found += find_paths(item, value, decode_base64, f"{path}[{index}]")
    elif isinstance(data, str):
        if value in data:
            found.append(path or "<value>")
        elif decode_base64:
            try:
                decoded = base64.b64decode(data, validate=True).decode()
            except (binascii.Error, ValueError):  # ValueError: non-ASCII text, not base64
                decoded = ""
            if value in decoded:
                found.append(f"base64({path})")
    return found


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data.decode(errors="replace")


def _platform_matches(descriptor: dict, wanted: str) -> bool:
    platform = descriptor.get("platform") or {}
    parts = wanted.split("/")
    return platform.get("os") == parts[0] and platform.get("architecture") == parts[1]


# File names under a run's state/ directory, per stage. Capture writes them; the stage
# map is computed from them alone, so it can be recomputed from a results dir (and
# from fixtures recorded from real runs).
STATE_FILES = {
    "index": "content-index.json",
    "manifest": "content-manifest.json",
    "config": "content-config.json",
    "image-record": "image-record.json",
    "container": "container-record.json",
    "bundle": "bundle-config.json",
}


def save_content(reader, image_record: dict, state_dir: Path, platform: str | None = None) -> None:
    """Walk the daemon's content store from the image record (index -> manifest -> config)
    and save each blob exactly as the daemon returned it."""
    platform = platform or host_platform()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILES["image-record"]).write_text(json.dumps(image_record, indent=2) + "\n")
    target = image_record["target"]
    blob = reader.content(target["digest"])
    if target["mediaType"] in MEDIA_INDEXES:
        (state_dir / STATE_FILES["index"]).write_bytes(blob)
        index = _json(blob)
        manifests = index.get("manifests", []) if isinstance(index, dict) else []
        chosen = next((m for m in manifests if _platform_matches(m, platform)), manifests[0] if manifests else None)
        if chosen is None:
            return
        blob = reader.content(chosen["digest"])
    (state_dir / STATE_FILES["manifest"]).write_bytes(blob)
    manifest = _json(blob)
    if isinstance(manifest, dict) and "config" in manifest:
        (state_dir / STATE_FILES["config"]).write_bytes(reader.content(manifest["config"]["digest"]))


def load_documents(results_dir: Path) -> list[StageDocument]:
    """Every stage document a run saved: state/ files and the recorder's recordings/."""
    state_dir = results_dir / "state"
    documents: list[StageDocument] = []
    for stage in ("index", "manifest", "config", "image-record"):
        path = state_dir / STATE_FILES[stage]
        if path.is_file():
            documents.append(StageDocument(stage, f"{stage} ({path.name})", _json(path.read_bytes())))
    container = state_dir / STATE_FILES["container"]
    if container.is_file():
        record = json.loads(container.read_text())
        documents.append(StageDocument("container-labels", "container record labels", record.get("labels") or {}))
        documents.append(StageDocument("spec", "container record spec", record.get("spec") or {}))
    recordings_dir = results_dir / "recordings"
    recordings = recordings_in(recordings_dir) if recordings_dir.is_dir() else []
    written = [r for r in recordings if r.action == "bundle"]
    if written:
        # config.json as the daemon wrote it, kept by the shim wrapper before the shim ran.
        for recording in written:
            documents.append(StageDocument("bundle", "bundle config.json as the daemon wrote it",
                                           _json(recording.config_json.read_bytes())))
    elif (bundle := state_dir / STATE_FILES["bundle"]).is_file():
        # Runs recorded before the shim wrapper: the bundle as read while the task ran.
        documents.append(StageDocument("bundle", "bundle config.json", _json(bundle.read_bytes())))
    for recording in recordings:
        if recording.action not in RUNTIME_ACTIONS:
            continue
        documents.append(StageDocument("runtime", f"runtime {recording.action} config.json",
                                       _json(recording.config_json.read_bytes())))
        if recording.urunc_json is not None:
            documents.append(StageDocument("runtime", "runtime rootfs /urunc.json",
                                           _json(recording.urunc_json.read_bytes()), decode_base64=True))
    return documents


def stage_map(sentinels: list[Sentinel], documents: list[StageDocument]) -> list[SentinelStages]:
    observed = {document.stage for document in documents}
    result = []
    for sentinel in sentinels:
        stages: dict[str, bool | None] = {}
        seen: dict[str, list[str]] = {}
        for stage in STAGES:
            if stage not in observed:
                stages[stage] = None
                continue
            paths = []
            for document in (d for d in documents if d.stage == stage):
                paths += [f"{document.label}: {p}" for p in find_paths(document.data, sentinel.value, document.decode_base64)]
            stages[stage] = bool(paths)
            if paths:
                seen[stage] = paths
        result.append(SentinelStages(sentinel, stages, seen))
    return result
