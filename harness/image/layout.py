"""Write a valid OCI image layout, by hand, with every annotation source in place.

Structure (one image index so that every source has a home):

    index.json                      the layout's entry point (ref name annotations)
    blobs/sha256/<image index>      annotations: source "index"
        manifests[i]                annotations: source "index-descriptor", platform
    blobs/sha256/<manifest>         annotations: source "manifest"
    blobs/sha256/<config>           config.Labels: source "config-label"
    blobs/sha256/<layer>            tiny busybox rootfs, /urunc.json: source "urunc-json"
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ToolMissing
from harness.image.scenario import Scenario, Sentinel, host_platform

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# Waits for one line on stdin, so the harness can read the live container's
# records before letting it exit (ctr forwards its stdin to the task).
DEFAULT_CMD = ("/bin/sh", "-c", "read -r line; echo annotrace-done")

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: str
    size: int

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass
class ImageLayout:
    """What was written: enough to find every blob again and to push it."""

    directory: Path
    reference: str  # repository:tag
    index: Blob
    manifests: dict[str, Blob] = field(default_factory=dict)  # platform -> manifest
    configs: dict[str, Blob] = field(default_factory=dict)  # platform -> config
    layers: list[Blob] = field(default_factory=list)

    def blob_path(self, digest: str) -> Path:
        algorithm, hexdigest = digest.split(":", 1)
        return self.directory / "blobs" / algorithm / hexdigest

    def to_dict(self) -> dict:
        return {
            "directory": str(self.directory),
            "reference": self.reference,
            "index": self.index.__dict__,
            "manifests": {p: b.__dict__ for p, b in self.manifests.items()},
            "configs": {p: b.__dict__ for p, b in self.configs.items()},
            "layers": [b.__dict__ for b in self.layers],
        }


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(directory: Path, media_type: str, data: bytes) -> Blob:
    hexdigest = hashlib.sha256(data).hexdigest()
    path = directory / "blobs" / "sha256" / hexdigest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Blob(media_type, f"sha256:{hexdigest}", len(data))


def _platform_dict(value: str) -> dict:
    parts = value.split("/")
    described = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        described["variant"] = parts[2]
    return described


def urunc_json(sentinels: list[Sentinel]) -> bytes:
    """urunc's /urunc.json: a flat object of full key names to base64 (StdEncoding) values."""
    document = {s.key: base64.b64encode(s.value.encode()).decode() for s in sentinels if s.source == "urunc-json"}
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def _busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ToolMissing("busybox", "install busybox-static (scripts/setup.sh does)")


def rootfs_tar(sentinels: list[Sentinel]) -> bytes:
    """A tiny runnable rootfs: static busybox as /bin/sh, plus /urunc.json when asked for."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "dev", "etc", "proc", "sys", "tmp"):
            add_dir(directory)
        add_file("bin/busybox", _busybox().read_bytes(), 0o755)
        for applet in ("sh", "cat", "echo", "sleep", "ls"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", 0o644)
        add_file("etc/group", b"root:x:0:\n", 0o644)
        if any(s.source == "urunc-json" for s in sentinels):
            add_file("urunc.json", urunc_json(sentinels), 0o644)
    return buffer.getvalue()


def _annotations(sentinels: list[Sentinel], source: str) -> dict[str, str]:
    return {s.key: s.value for s in sentinels if s.source == source}


def write_layout(scenario: Scenario, sentinels: list[Sentinel], directory: Path, registry_host: str = "") -> ImageLayout:
    """Write the scenario's image as an OCI layout in `directory` (created, must be empty)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")

    layer_tar = rootfs_tar(sentinels)
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    layer = _write_blob(directory, MEDIA_LAYER_GZIP, gzip.compress(layer_tar, mtime=0))

    manifests: dict[str, Blob] = {}
    configs: dict[str, Blob] = {}
    entries = []
    for platform_name in scenario.image.platforms:
        platform_dict = _platform_dict(platform_name)
        config_document = {
            **platform_dict,
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": list(scenario.image.cmd or DEFAULT_CMD),
                "Labels": _annotations(sentinels, "config-label"),
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "annotrace image layout writer"}],
        }
        configs[platform_name] = config = _write_blob(directory, MEDIA_CONFIG, _canonical(config_document))
        manifest_document = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        }
        if annotations := _annotations(sentinels, "manifest"):
            manifest_document["annotations"] = annotations
        manifests[platform_name] = manifest = _write_blob(directory, MEDIA_MANIFEST, _canonical(manifest_document))
        entry = manifest.descriptor(platform=platform_dict)
        if annotations := _annotations(sentinels, "index-descriptor"):
            entry["annotations"] = annotations
        entries.append(entry)

    index_document = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
    if annotations := _annotations(sentinels, "index"):
        index_document["annotations"] = annotations
    index = _write_blob(directory, MEDIA_INDEX, _canonical(index_document))

    repository = f"{registry_host}/{scenario.image.name}" if registry_host else scenario.image.name
    reference = f"{repository}:{scenario.image.tag}"
    top = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            index.descriptor(
                annotations={
                    "org.opencontainers.image.ref.name": scenario.image.tag,
                    "io.containerd.image.name": reference,
                }
            )
        ],
    }
    (directory / "index.json").write_text(json.dumps(top, indent=2) + "\n")
    return ImageLayout(directory, reference, index, manifests, configs, [layer])


def layout_tar(layout: ImageLayout, destination: Path) -> Path:
    """The layout as a tar archive, the form `ctr images import` reads."""
    with tarfile.open(destination, "w") as tar:
        for path in sorted(layout.directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(layout.directory)))
    return destination


__all__ = ["ImageLayout", "host_platform", "layout_tar", "rootfs_tar", "urunc_json", "write_layout"]
