"""Unit tests for harness.image.layout: write an OCI layout, read it back like a validator."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import ToolMissing
from harness.image import layout as layout_module
from harness.image.layout import (
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    layout_tar,
    rootfs_tar,
    write_layout,
)
from harness.image.scenario import Scenario, Sentinel, parse_scenario

FAKE_BUSYBOX = b"\x7fELF fake static busybox for tests\n"

PLATFORMS = {
    "linux/amd64": {"os": "linux", "architecture": "amd64"},
    "linux/arm64/v8": {"os": "linux", "architecture": "arm64", "variant": "v8"},
}

ALL_SOURCES = {
    "index": {"org.example.index.a": "idx-a", "org.example.index.b": "idx-b"},
    "index-descriptor": {"org.example.descriptor": "desc"},
    "manifest": {"org.example.manifest": "man", "com.urunc.unikernel.hypervisor": "qemu"},
    "config-label": {"org.example.label": "lbl", "com.urunc.unikernel.unikernelType": "unikraft"},
    "urunc-json": {"com.urunc.unikernel.binary": "/unikernel/app", "com.urunc.unikernel.cmdline": "console=ttyS0 -- x"},
    "runtime-flag": {"org.example.flag": "flag", "com.urunc.unikernel.useDMBlock": "true"},
}


# --------------------------------------------------------------------------- helpers


def make_scenario(sources: dict | None = None, platforms: list[str] | None = None) -> Scenario:
    return parse_scenario(
        {
            "name": "t-layout",
            "image": {"name": "annotrace/layout", "tag": "v1", "platforms": platforms or list(PLATFORMS)},
            "sources": ALL_SOURCES if sources is None else sources,
        }
    )


def expected(sentinels: list[Sentinel], source: str) -> dict[str, str]:
    return {s.key: s.value for s in sentinels if s.source == source}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_blob(layout_dir: Path, descriptor: dict) -> bytes:
    """A blob's bytes, after checking its path, digest and size against the descriptor."""
    algorithm, hexdigest = descriptor["digest"].split(":", 1)
    assert algorithm == "sha256"
    path = layout_dir / "blobs" / "sha256" / hexdigest
    assert path.is_file(), f"missing blob {path}"
    data = path.read_bytes()
    assert sha256_hex(data) == hexdigest, f"digest mismatch for {path}"
    assert len(data) == descriptor["size"], f"size mismatch for {path}"
    return data


def read_json_blob(layout_dir: Path, descriptor: dict) -> dict:
    """A JSON blob; its own mediaType, where it has one, must match the descriptor's."""
    document = json.loads(read_blob(layout_dir, descriptor))
    if "mediaType" in document:
        assert document["mediaType"] == descriptor["mediaType"]
    return document


def layer_members(layer_tar: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
        return {
            info.name: (info, tar.extractfile(info).read() if info.isfile() else None) for info in tar.getmembers()
        }


@dataclass
class Image:
    """One platform's image as read back from the layout."""

    descriptor: dict  # the entry in the image index
    manifest: dict
    config: dict
    layer_gz: bytes

    @property
    def layer_tar(self) -> bytes:
        return gzip.decompress(self.layer_gz)


@dataclass
class ReadBack:
    top: dict  # index.json
    index_descriptor: dict
    index: dict  # the image index blob
    images: list[Image]


def read_layout(layout_dir: Path) -> ReadBack:
    """Follow index.json -> image index -> manifests -> config + layers, verifying every descriptor."""
    top = json.loads((layout_dir / "index.json").read_text())
    assert len(top["manifests"]) == 1
    index_descriptor = top["manifests"][0]
    index = read_json_blob(layout_dir, index_descriptor)
    images = []
    for entry in index["manifests"]:
        assert entry["mediaType"] == MEDIA_MANIFEST
        manifest = read_json_blob(layout_dir, entry)
        assert manifest["config"]["mediaType"] == MEDIA_CONFIG
        config = read_json_blob(layout_dir, manifest["config"])
        assert len(manifest["layers"]) == 1
        assert manifest["layers"][0]["mediaType"] == MEDIA_LAYER_GZIP
        layer_gz = read_blob(layout_dir, manifest["layers"][0])
        images.append(Image(entry, manifest, config, layer_gz))
    return ReadBack(top, index_descriptor, index, images)


def all_layout_bytes(layout_dir: Path) -> list[tuple[str, bytes]]:
    """Every file in the layout, plus every layer decompressed, plus every file inside the layers."""
    found = []
    for path in sorted(layout_dir.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        found.append((str(path.relative_to(layout_dir)), data))
        if data[:2] == b"\x1f\x8b":
            tar_bytes = gzip.decompress(data)
            found.append((f"{path.name} (gunzipped)", tar_bytes))
            for name, (_, content) in layer_members(tar_bytes).items():
                if content is not None:
                    found.append((f"{path.name}:{name}", content))
    return found


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def fake_busybox(tmp_path, monkeypatch) -> Path:
    """Tests do not depend on the host's busybox."""
    path = tmp_path / "busybox"
    path.write_bytes(FAKE_BUSYBOX)
    monkeypatch.setattr(layout_module, "BUSYBOX_CANDIDATES", (str(tmp_path / "absent"), str(path)))
    return path


@pytest.fixture
def scenario() -> Scenario:
    return make_scenario()


@pytest.fixture
def sentinels(scenario) -> list[Sentinel]:
    return scenario.sentinels("t0")


@pytest.fixture
def layout_dir(tmp_path) -> Path:
    return tmp_path / "layout"


@pytest.fixture
def written(scenario, sentinels, layout_dir):
    return write_layout(scenario, sentinels, layout_dir)


@pytest.fixture
def back(written, layout_dir) -> ReadBack:
    return read_layout(layout_dir)


# --------------------------------------------------------------------------- layout structure


def test_oci_layout_file(written, layout_dir):
    assert json.loads((layout_dir / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_index_json_names_one_image_index(back):
    assert back.top["schemaVersion"] == 2
    assert back.index_descriptor["mediaType"] == MEDIA_INDEX
    assert back.index_descriptor["annotations"] == {
        "org.opencontainers.image.ref.name": "v1",
        "io.containerd.image.name": "annotrace/layout:v1",
    }


def test_registry_host_prefixes_the_image_name(scenario, sentinels, layout_dir):
    written = write_layout(scenario, sentinels, layout_dir, registry_host="localhost:5000")

    assert written.reference == "localhost:5000/annotrace/layout:v1"
    annotations = read_layout(layout_dir).index_descriptor["annotations"]
    assert annotations == {
        "org.opencontainers.image.ref.name": "v1",
        "io.containerd.image.name": "localhost:5000/annotrace/layout:v1",
    }


def test_every_blob_is_reachable_and_nothing_else_is_written(back, layout_dir):
    reachable = {back.index_descriptor["digest"]}
    for image in back.images:
        reachable |= {image.descriptor["digest"], image.manifest["config"]["digest"]}
        reachable |= {layer["digest"] for layer in image.manifest["layers"]}

    on_disk = {f"sha256:{p.name}" for p in (layout_dir / "blobs" / "sha256").iterdir()}
    # 1 image index + 2 manifests + 2 configs + 1 shared layer
    assert len(reachable) == 6
    assert on_disk == reachable
    assert sorted(p.name for p in layout_dir.iterdir()) == ["blobs", "index.json", "oci-layout"]


def test_documents_have_schema_and_media_types(back):
    assert back.index["schemaVersion"] == 2
    assert back.index["mediaType"] == MEDIA_INDEX
    for image in back.images:
        assert image.manifest["schemaVersion"] == 2
        assert image.manifest["mediaType"] == MEDIA_MANIFEST
        assert image.layer_gz[:2] == b"\x1f\x8b"


def test_returned_image_layout_matches_the_files(written, back, layout_dir):
    assert written.directory == layout_dir
    assert written.reference == "annotrace/layout:v1"
    assert written.index.descriptor() == {k: back.index_descriptor[k] for k in ("mediaType", "digest", "size")}
    assert list(written.manifests) == list(PLATFORMS)
    assert list(written.configs) == list(PLATFORMS)
    for image, platform in zip(back.images, PLATFORMS):
        assert written.manifests[platform].digest == image.descriptor["digest"]
        assert written.configs[platform].descriptor() == image.manifest["config"]
        assert written.layers[0].descriptor() == image.manifest["layers"][0]
    assert written.blob_path(written.index.digest) == layout_dir / "blobs" / "sha256" / written.index.digest[7:]
    assert written.to_dict()["index"] == {
        "media_type": MEDIA_INDEX,
        "digest": written.index.digest,
        "size": written.index.size,
    }


# --------------------------------------------------------------------------- sentinels in their places


def test_image_index_annotations_are_exactly_the_index_sentinels(back, sentinels):
    assert back.index["annotations"] == expected(sentinels, "index")
    assert back.index["annotations"] == {
        "org.example.index.a": "idx-a-atr-t000-index",
        "org.example.index.b": "idx-b-atr-t001-index",
    }


def test_manifest_descriptors_carry_platform_and_descriptor_sentinels(back, sentinels):
    assert [image.descriptor["platform"] for image in back.images] == list(PLATFORMS.values())
    for image in back.images:
        assert image.descriptor["annotations"] == expected(sentinels, "index-descriptor")
        assert image.descriptor["annotations"] == {"org.example.descriptor": "desc-atr-t002-index-descriptor"}


def test_manifest_annotations_are_exactly_the_manifest_sentinels(back, sentinels):
    for image in back.images:
        assert image.manifest["annotations"] == expected(sentinels, "manifest")
        assert set(image.manifest["annotations"]) == {"org.example.manifest", "com.urunc.unikernel.hypervisor"}


def test_config_labels_are_exactly_the_config_label_sentinels(back, sentinels):
    for image in back.images:
        assert image.config["config"]["Labels"] == expected(sentinels, "config-label")
        assert len(image.config["config"]["Labels"]) == 2


def test_config_platform_matches_the_manifest_descriptor(back):
    for image, platform in zip(back.images, PLATFORMS.values()):
        assert image.config["os"] == platform["os"]
        assert image.config["architecture"] == platform["architecture"]
        assert image.config.get("variant") == platform.get("variant")


def test_config_runs_the_default_command(back):
    for image in back.images:
        assert image.config["config"]["Cmd"] == list(layout_module.DEFAULT_CMD)
        assert image.config["config"]["Env"] == ["PATH=/bin"]


def test_scenario_cmd_replaces_the_default(sentinels, layout_dir):
    scenario = parse_scenario(
        {"name": "t-cmd", "image": {"name": "annotrace/cmd", "platforms": ["linux/amd64"], "cmd": ["/bin/echo", "hi"]}}
    )
    write_layout(scenario, [], layout_dir)

    (image,) = read_layout(layout_dir).images
    assert image.config["config"]["Cmd"] == ["/bin/echo", "hi"]


def test_diff_id_is_the_sha256_of_the_uncompressed_layer(back):
    for image in back.images:
        assert image.config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{sha256_hex(image.layer_tar)}"]}
        assert image.config["rootfs"]["diff_ids"][0] != image.manifest["layers"][0]["digest"]


def test_runtime_flag_sentinels_appear_in_no_blob(written, layout_dir, sentinels):
    everything = all_layout_bytes(layout_dir)
    runtime_flags = [s for s in sentinels if s.source == "runtime-flag"]
    assert len(runtime_flags) == 2
    for sentinel in runtime_flags:
        for encoded in (sentinel.value.encode(), base64.b64encode(sentinel.value.encode())):
            holders = [name for name, data in everything if encoded in data]
            assert holders == [], f"{sentinel.value} leaked into {holders}"
    # the search itself works: every other sentinel is found somewhere
    for sentinel in sentinels:
        if sentinel.source in ("runtime-flag", "urunc-json"):
            continue
        assert any(sentinel.value.encode() in data for _, data in everything), sentinel


def test_without_sources_no_annotations_are_written(layout_dir):
    scenario = make_scenario(sources={})
    write_layout(scenario, scenario.sentinels("t0"), layout_dir)

    back = read_layout(layout_dir)
    assert "annotations" not in back.index
    for image in back.images:
        assert "annotations" not in image.descriptor
        assert "annotations" not in image.manifest
        assert image.config["config"]["Labels"] == {}


# --------------------------------------------------------------------------- the layer


def test_layer_is_one_shared_busybox_rootfs(back, fake_busybox):
    assert len({image.manifest["layers"][0]["digest"] for image in back.images}) == 1
    members = layer_members(back.images[0].layer_tar)

    info, content = members["bin/busybox"]
    assert info.isfile()
    assert content == FAKE_BUSYBOX
    assert info.mode & 0o111 == 0o111
    assert stat.S_IMODE(info.mode) == 0o755

    for applet in ("sh", "cat", "echo", "sleep", "ls"):
        link, _ = members[f"bin/{applet}"]
        assert link.issym()
        assert link.linkname == "busybox"
    for directory in ("bin", "dev", "etc", "proc", "sys", "tmp"):
        assert members[directory][0].isdir()
    assert members["etc/passwd"][1] == b"root:x:0:0:root:/:/bin/sh\n"


def test_urunc_json_maps_each_key_to_base64_sentinel(back, sentinels):
    info, content = layer_members(back.images[0].layer_tar)["urunc.json"]
    assert info.isfile()
    document = json.loads(content)

    assert set(document) == {"com.urunc.unikernel.binary", "com.urunc.unikernel.cmdline"}
    decoded = {key: base64.b64decode(value, validate=True).decode() for key, value in document.items()}
    assert decoded == expected(sentinels, "urunc-json")
    assert decoded["com.urunc.unikernel.cmdline"] == "console=ttyS0 -- x-atr-t008-urunc-json"


def test_no_urunc_json_without_the_source(layout_dir):
    sources = {k: v for k, v in ALL_SOURCES.items() if k != "urunc-json"}
    scenario = make_scenario(sources=sources)
    write_layout(scenario, scenario.sentinels("t0"), layout_dir)

    members = layer_members(read_layout(layout_dir).images[0].layer_tar)
    assert "urunc.json" not in members
    assert "bin/busybox" in members


def test_rootfs_tar_needs_busybox(monkeypatch, tmp_path):
    monkeypatch.setattr(layout_module, "BUSYBOX_CANDIDATES", (str(tmp_path / "nope" / "busybox"),))

    with pytest.raises(ToolMissing) as caught:
        rootfs_tar([])

    assert caught.value.tool == "busybox"
    assert "required tool 'busybox' not found" in str(caught.value)
    assert "busybox-static" in str(caught.value)


# --------------------------------------------------------------------------- reproducibility and export


def test_layout_is_deterministic(scenario, sentinels, tmp_path):
    first = write_layout(scenario, sentinels, tmp_path / "one")
    second = write_layout(scenario, sentinels, tmp_path / "two")

    assert first.index == second.index
    assert first.layers == second.layers
    assert (tmp_path / "one" / "index.json").read_bytes() == (tmp_path / "two" / "index.json").read_bytes()
    # no wall-clock time hides in the layer: the gzip header's MTIME field is zero
    layer_gz = first.blob_path(first.layers[0].digest).read_bytes()
    assert layer_gz[4:8] == b"\x00\x00\x00\x00"
    for name, (info, _) in layer_members(gzip.decompress(layer_gz)).items():
        assert (info.mtime, info.uid, info.gid) == (0, 0, 0), name


def test_different_sentinels_give_a_different_index(scenario, tmp_path):
    first = write_layout(scenario, scenario.sentinels("aa"), tmp_path / "one")
    second = write_layout(scenario, scenario.sentinels("bb"), tmp_path / "two")

    assert first.index.digest != second.index.digest


def test_layout_tar_holds_every_file(written, layout_dir, tmp_path):
    destination = layout_tar(written, tmp_path / "image.tar")

    assert destination == tmp_path / "image.tar"
    with tarfile.open(destination) as tar:
        contents = {info.name: tar.extractfile(info).read() for info in tar.getmembers() if info.isfile()}

    blob_names = {f"blobs/sha256/{p.name}" for p in (layout_dir / "blobs" / "sha256").iterdir()}
    assert len(blob_names) == 6
    assert set(contents) == {"index.json", "oci-layout"} | blob_names
    for name, data in contents.items():
        assert data == (layout_dir / name).read_bytes()
