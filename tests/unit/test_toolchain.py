"""Unit tests for harness.toolchain (resolve, build helpers) and harness.versions.

No network and no go command: the module-proxy lookups in resolve (_info, _versions)
are replaced by fakes, and the build helpers are exercised on files in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness import versions
from harness.errors import HarnessError
from harness.toolchain import build, resolve
from harness.toolchain.build import Build, _build_key, _cached, _describe_patches, _toolchains_to_try, has_dwarf
from harness.toolchain.resolve import HINT, ResolvedVersion, newest_in_line, resolve_version
from harness.versions import V1_MODULE, V2_MODULE

TIME = "2025-08-27T12:00:00Z"


# --------------------------------------------------------------------------- newest_in_line


def test_newest_in_line_compares_patch_numerically() -> None:
    assert newest_in_line(["v1.7.9", "v1.7.35", "v1.7.10"], "v1.7") == "v1.7.35"


def test_newest_in_line_ignores_pre_releases() -> None:
    tags = ["v2.1.0-beta.0", "v2.1.0-rc.1", "v2.0.9"]
    assert newest_in_line(tags, "v2.1") is None
    assert newest_in_line(tags + ["v2.1.0"], "v2.1") == "v2.1.0"
    assert newest_in_line(["v2.1.3", "v2.1.4-rc.0"], "v2.1") == "v2.1.3"


def test_newest_in_line_ignores_other_lines() -> None:
    tags = ["v1.7.2", "v1.70.5", "v1.71.0", "v1.6.99", "v2.7.1"]
    assert newest_in_line(tags, "v1.7") == "v1.7.2"
    assert newest_in_line(["v1.70.5"], "v1.7") is None


def test_newest_in_line_none_when_empty() -> None:
    assert newest_in_line([], "v1.7") is None
    assert newest_in_line(["v1.6.1", "garbage", "v1.7"], "v1.7") is None


# --------------------------------------------------------------------------- resolve_version


class FakeProxy:
    """Stands in for the module proxy: (module, query) -> `go list -m -json` output."""

    def __init__(self, infos: dict[tuple[str, str], dict] | None = None, tags: dict[str, list[str]] | None = None):
        self.infos = infos or {}
        self.tags = tags or {}
        self.info_calls: list[tuple[str, str]] = []
        self.versions_calls: list[str] = []

    def info(self, module: str, query: str) -> dict | None:
        self.info_calls.append((module, query))
        return self.infos.get((module, query))

    def versions(self, module: str) -> list[str]:
        self.versions_calls.append(module)
        return self.tags.get(module, [])


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> FakeProxy:
    fake = FakeProxy()
    monkeypatch.setattr(resolve, "_info", fake.info)
    monkeypatch.setattr(resolve, "_versions", fake.versions)
    return fake


def test_exact_v2_tag(proxy: FakeProxy) -> None:
    proxy.infos[(V2_MODULE, "v2.1.4")] = {"Version": "v2.1.4", "Time": TIME}
    got = resolve_version("v2.1.4")
    assert got == ResolvedVersion("v2.1.4", V2_MODULE, "v2.1.4", TIME, "")
    assert got.module == "github.com/containerd/containerd/v2"
    assert got.layout is versions.V2_LAYOUT
    assert proxy.info_calls == [(V2_MODULE, "v2.1.4")]


def test_exact_v1_tag_uses_v1_module(proxy: FakeProxy) -> None:
    proxy.infos[(V1_MODULE, "v1.7.35")] = {"Version": "v1.7.35", "Time": TIME}
    got = resolve_version("  v1.7.35\n")
    assert got.requested == "v1.7.35"
    assert got.module == "github.com/containerd/containerd"
    assert got.version == "v1.7.35"
    assert got.layout is versions.V1_LAYOUT
    assert proxy.info_calls == [(V1_MODULE, "v1.7.35")]


def test_exact_tag_unknown(proxy: FakeProxy) -> None:
    with pytest.raises(HarnessError) as caught:
        resolve_version("v2.1.99")
    message = str(caught.value)
    assert "unknown containerd version 'v2.1.99'" in message
    assert V2_MODULE in message
    assert "v2.1.4" in message and HINT in message
    assert proxy.info_calls == [(V2_MODULE, "v2.1.99")]


def test_release_line_picks_newest(proxy: FakeProxy) -> None:
    proxy.tags[V1_MODULE] = ["v1.7.9", "v1.7.35", "v1.7.36-rc.0", "v1.70.0", "v1.6.38"]
    proxy.infos[(V1_MODULE, "v1.7.35")] = {"Version": "v1.7.35", "Time": TIME}
    got = resolve_version("v1.7")
    assert got == ResolvedVersion("v1.7", V1_MODULE, "v1.7.35", TIME, "")
    assert proxy.versions_calls == [V1_MODULE]
    assert proxy.info_calls == [(V1_MODULE, "v1.7.35")]


def test_release_line_v2_lists_v2_module(proxy: FakeProxy) -> None:
    proxy.tags[V2_MODULE] = ["v2.1.3", "v2.1.4", "v2.2.0"]
    got = resolve_version("v2.1")
    # no info from the proxy: the tag itself stands in
    assert (got.module, got.version, got.time, got.commit) == (V2_MODULE, "v2.1.4", "", "")
    assert proxy.versions_calls == [V2_MODULE]


def test_release_line_without_releases(proxy: FakeProxy) -> None:
    proxy.tags[V1_MODULE] = ["v1.7.1", "v1.9.0-rc.1"]
    with pytest.raises(HarnessError) as caught:
        resolve_version("v1.9")
    message = str(caught.value)
    assert "unknown containerd release line 'v1.9'" in message
    assert "v2.1.4" in message and HINT in message


def test_main_resolves_to_pseudo_version_commit(proxy: FakeProxy) -> None:
    pseudo = "v2.4.3-0.20261101120000-abcdef123456"
    proxy.infos[(V2_MODULE, "main")] = {"Version": pseudo, "Time": TIME}
    got = resolve_version("main")
    assert got == ResolvedVersion("main", V2_MODULE, pseudo, TIME, "abcdef123456")
    assert proxy.info_calls == [(V2_MODULE, "main")]


def test_latest_resolves_under_v2_first(proxy: FakeProxy) -> None:
    proxy.infos[(V2_MODULE, "latest")] = {"Version": "v2.3.1", "Time": TIME}
    proxy.infos[(V1_MODULE, "latest")] = {"Version": "v1.7.35", "Time": TIME}
    got = resolve_version("latest")
    assert (got.module, got.version, got.commit) == (V2_MODULE, "v2.3.1", "")


def test_old_commit_falls_back_to_v1_module(proxy: FakeProxy) -> None:
    commit = "0123456789abcdef"
    pseudo = "v1.7.0-0.20230101000000-0123456789ab"
    proxy.infos[(V1_MODULE, commit)] = {"Version": pseudo, "Time": TIME}
    got = resolve_version(commit)
    assert got.module == V1_MODULE
    assert got.version == pseudo
    assert got.commit == "0123456789ab"
    assert proxy.info_calls == [(V2_MODULE, commit), (V1_MODULE, commit)]


def test_commit_pointing_at_a_tag_keeps_requested_hash(proxy: FakeProxy) -> None:
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    proxy.infos[(V2_MODULE, commit)] = {"Version": "v2.1.4", "Time": TIME}
    got = resolve_version(commit)
    assert (got.module, got.version, got.commit) == (V2_MODULE, "v2.1.4", commit[:12])


def test_commit_unknown_under_both_modules(proxy: FakeProxy) -> None:
    with pytest.raises(HarnessError) as caught:
        resolve_version("deadbeef")
    message = str(caught.value)
    assert "unknown containerd version 'deadbeef'" in message
    assert V2_MODULE in message and V1_MODULE in message
    assert "v2.1.4" in message
    assert proxy.info_calls == [(V2_MODULE, "deadbeef"), (V1_MODULE, "deadbeef")]


@pytest.mark.parametrize("garbage", ["banana", "2.1.4", "v2", "v2.1.4.5", "DEADBEEF", "abc12", ""])
def test_unreadable_version(proxy: FakeProxy, garbage: str) -> None:
    with pytest.raises(HarnessError) as caught:
        resolve_version(garbage)
    message = str(caught.value)
    assert f"cannot read containerd version {garbage!r}" in message
    assert "v2.1.4" in message and "release line (v1.7)" in message
    assert proxy.info_calls == [] and proxy.versions_calls == []


def test_resolved_version_to_dict() -> None:
    resolved = ResolvedVersion("main", V2_MODULE, "v2.4.3-0.20261101120000-abcdef123456", TIME, "abcdef123456")
    assert resolved.to_dict() == {
        "requested": "main",
        "module": V2_MODULE,
        "version": "v2.4.3-0.20261101120000-abcdef123456",
        "time": TIME,
        "commit": "abcdef123456",
    }


@pytest.mark.parametrize(
    "pseudo",
    ["v0.0.0-20261101120000-abcdef123456", "v2.4.3-0.20261101120000-abcdef123456"],
)
def test_pseudo_version_forms_carry_commit(proxy: FakeProxy, pseudo: str) -> None:
    proxy.infos[(V2_MODULE, "main")] = {"Version": pseudo}
    assert resolve_version("main").commit == "abcdef123456"


def test_pre_release_pseudo_version_carries_commit(proxy: FakeProxy) -> None:
    proxy.infos[(V2_MODULE, "main")] = {"Version": "v2.2.0-rc.0.0.20250101120000-abcdef123456"}
    assert resolve_version("main").commit == "abcdef123456"


# --------------------------------------------------------------------------- build key


def resolved(version: str = "v2.1.4", module: str = V2_MODULE) -> ResolvedVersion:
    return ResolvedVersion(version, module, version, TIME, "")


PATCH_A = {"name": "a.patch", "path": "/p/a.patch", "sha256": "a" * 64}
PATCH_B = {"name": "b.patch", "path": "/p/b.patch", "sha256": "b" * 64}


def test_build_key_is_stable_and_short_hex() -> None:
    key = _build_key(resolved(), [PATCH_A], "auto")
    assert key == _build_key(resolved(), [dict(PATCH_A)], "auto")
    assert len(key) == 16
    int(key, 16)


def test_build_key_ignores_patch_name_and_path_but_not_content() -> None:
    moved = {**PATCH_A, "name": "renamed.patch", "path": "/elsewhere/renamed.patch"}
    assert _build_key(resolved(), [PATCH_A], "auto") == _build_key(resolved(), [moved], "auto")


@pytest.mark.parametrize(
    "other",
    [
        (resolved(), [], "auto"),
        (resolved(), [PATCH_B], "auto"),
        (resolved(), [PATCH_A, PATCH_B], "auto"),
        (resolved("v2.1.3"), [PATCH_A], "auto"),
        (resolved("v2.1.4", V1_MODULE), [PATCH_A], "auto"),
        (resolved(), [PATCH_A], "local"),
        (resolved(), [PATCH_A], "go1.24.13"),
    ],
    ids=["no-patches", "other-patch", "extra-patch", "version", "module", "toolchain-local", "toolchain-go"],
)
def test_build_key_changes_with_each_input(other: tuple) -> None:
    assert _build_key(*other) != _build_key(resolved(), [PATCH_A], "auto")


def test_build_key_depends_on_patch_order() -> None:
    assert _build_key(resolved(), [PATCH_A, PATCH_B], "auto") != _build_key(resolved(), [PATCH_B, PATCH_A], "auto")


# --------------------------------------------------------------------------- cache


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


BINARIES = {"ctr": b"ctr bytes", "containerd": b"containerd bytes", "containerd-shim-runc-v2": b"shim bytes"}


def make_cache_entry(directory: Path, binaries: dict[str, bytes] = BINARIES) -> dict:
    (directory / "bin").mkdir(parents=True)
    for name, data in binaries.items():
        (directory / "bin" / name).write_bytes(data)
    manifest = {
        "resolved": resolved().to_dict(),
        "binaries": {name: sha(data) for name, data in binaries.items()},
    }
    (directory / "build.json").write_text(json.dumps(manifest))
    return manifest


def test_cached_none_without_build_json(tmp_path: Path) -> None:
    assert _cached(tmp_path) is None
    assert _cached(tmp_path / "does-not-exist") is None
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ctr").write_bytes(b"x")
    assert _cached(tmp_path) is None


def test_cached_reuses_matching_binaries(tmp_path: Path) -> None:
    manifest = make_cache_entry(tmp_path)
    got = _cached(tmp_path)
    assert isinstance(got, Build)
    assert got.reused is True
    assert got.directory == tmp_path
    assert got.manifest == manifest
    assert got.binary("ctr") == tmp_path / "bin" / "ctr"
    assert got.version == "v2.1.4" and got.module == V2_MODULE


def test_cached_none_when_a_binary_changed(tmp_path: Path) -> None:
    make_cache_entry(tmp_path)
    (tmp_path / "bin" / "containerd").write_bytes(b"containerd bytes, rebuilt")
    assert _cached(tmp_path) is None


def test_cached_none_when_a_binary_is_missing(tmp_path: Path) -> None:
    make_cache_entry(tmp_path)
    (tmp_path / "bin" / "containerd-shim-runc-v2").unlink()
    assert _cached(tmp_path) is None


# --------------------------------------------------------------------------- patches


def test_describe_patches_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.patch"
    with pytest.raises(HarnessError) as caught:
        _describe_patches([missing])
    assert str(missing) in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_describe_patches_existing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "fix.patch").write_bytes(body)
    (tmp_path / "p" / "two.diff").write_bytes(b"other")
    monkeypatch.chdir(tmp_path)
    got = _describe_patches([Path("p/fix.patch"), Path("p/two.diff")])
    assert got == [
        {"name": "fix.patch", "path": str(tmp_path / "p" / "fix.patch"), "sha256": sha(body)},
        {"name": "two.diff", "path": str(tmp_path / "p" / "two.diff"), "sha256": sha(b"other")},
    ]
    assert Path(got[0]["path"]).is_absolute()


def test_describe_no_patches() -> None:
    assert _describe_patches([]) == []


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 1 MiB chunk size
    (tmp_path / "f").write_bytes(data)
    assert build.sha256_file(tmp_path / "f") == sha(data)


# --------------------------------------------------------------------------- DWARF


def test_has_dwarf_true_with_debug_info(tmp_path: Path) -> None:
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF" + b"\0" * 100 + b".debug_info" + b"\0" * 10)
    assert has_dwarf(binary) is True


def test_has_dwarf_true_with_compressed_debug_info(tmp_path: Path) -> None:
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF" + b".zdebug_info")
    assert has_dwarf(binary) is True


def test_has_dwarf_false_without(tmp_path: Path) -> None:
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF" + b"\0" * 100 + b".debug_line .symtab debug_info")
    assert has_dwarf(binary) is False


# --------------------------------------------------------------------------- toolchains


def write_gomod(src: Path, toolchain: str | None) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    text = "module github.com/containerd/containerd\n\ngo 1.22.0\n"
    if toolchain:
        text += f"\ntoolchain {toolchain}\n"
    text += "\nrequire (\n\tgithub.com/x/y v1.0.0\n)\n"
    (src / "go.mod").write_text(text)
    return src


def test_toolchains_auto_local_gomod_then_line_fallback(tmp_path: Path) -> None:
    src = write_gomod(tmp_path / "src", "go1.23.4")
    fallback = versions.release_line("v1.7.35").fallback_go
    assert fallback == next(line.fallback_go for line in versions.RELEASE_LINES if line.prefix == "v1.7")
    assert _toolchains_to_try(resolved("v1.7.35", V1_MODULE), "auto", src) == ["local", "go1.23.4", fallback]


def test_toolchains_auto_without_toolchain_line(tmp_path: Path) -> None:
    src = write_gomod(tmp_path / "src", None)
    fallback = versions.release_line("v2.1.4").fallback_go
    assert _toolchains_to_try(resolved("v2.1.4"), "auto", src) == ["local", fallback]


def test_toolchains_auto_deduplicates(tmp_path: Path) -> None:
    fallback = versions.release_line("v2.1.4").fallback_go
    src = write_gomod(tmp_path / "src", fallback)
    assert _toolchains_to_try(resolved("v2.1.4"), "auto", src) == ["local", fallback]


def test_toolchains_auto_unknown_line_has_no_fallback(tmp_path: Path) -> None:
    src = write_gomod(tmp_path / "src", "go1.26.1")
    pseudo = resolved("v2.9.1-0.20261101120000-abcdef123456")
    assert _toolchains_to_try(pseudo, "auto", src) == ["local", "go1.26.1"]


def test_toolchains_explicit_is_the_only_one(tmp_path: Path) -> None:
    # go.mod is not even read
    assert _toolchains_to_try(resolved("v1.7.35", V1_MODULE), "go1.22.12", tmp_path / "no-src") == ["go1.22.12"]
    assert _toolchains_to_try(resolved(), "local", tmp_path / "no-src") == ["local"]


# --------------------------------------------------------------------------- versions


def test_layout_for_version() -> None:
    assert versions.layout_for_version("v2.1.4").name == "v2"
    assert versions.layout_for_version("v1.7.35").name == "v1"
    assert versions.layout_for_version("v2.4.3-0.20261101120000-abcdef123456").name == "v2"
    assert versions.layout_for_version("v1.6.0-rc.1").name == "v1"
    assert versions.layout_for_version("not-a-version").name == "v1"


def test_layout_for_module() -> None:
    assert versions.layout_for_module(V2_MODULE) is versions.V2_LAYOUT
    assert versions.layout_for_module(V1_MODULE) is versions.V1_LAYOUT


def test_release_line() -> None:
    assert versions.release_line("v1.6.38").prefix == "v1.6"
    assert versions.release_line("v1.6.38").layout is versions.V1_LAYOUT
    assert versions.release_line("v2.1.4").layout is versions.V2_LAYOUT
    assert versions.release_line("v2.1.0-rc.1").prefix == "v2.1"
    assert versions.release_line("v9.1.0") is None
    assert versions.release_line("v1.7") is None
    assert versions.release_line("main") is None


def test_release_lines_match_their_layouts() -> None:
    prefixes = [line.prefix for line in versions.RELEASE_LINES]
    assert len(prefixes) == len(set(prefixes))
    for line in versions.RELEASE_LINES:
        expected = versions.V2_LAYOUT if line.prefix.startswith("v2.") else versions.V1_LAYOUT
        assert line.layout is expected, line.prefix
        assert line.fallback_go.startswith("go1.")
    assert versions.release_line(versions.DEFAULT_VERSION) is not None


def test_layouts_name_images_config_per_major() -> None:
    assert versions.V1_LAYOUT.functions["images.Config"] == "github.com/containerd/containerd/images.Config"
    assert versions.V2_LAYOUT.functions["images.Config"] == "github.com/containerd/containerd/v2/core/images.Config"
    assert versions.V1_LAYOUT.functions.keys() == versions.V2_LAYOUT.functions.keys()
    assert versions.V1_LAYOUT.commands == versions.V2_LAYOUT.commands
    assert set(versions.V2_LAYOUT.commands) == {"ctr", "containerd", "containerd-shim-runc-v2"}
    assert versions.V1_LAYOUT.version_pkg == "github.com/containerd/containerd/version"
    assert versions.V2_LAYOUT.version_pkg == "github.com/containerd/containerd/v2/version"


def test_has_dwarf_on_an_empty_file(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert build.has_dwarf(empty) is False


@pytest.mark.parametrize("content", ["{not json", '{"format": 1}', '{"binaries": 3}'])
def test_cached_treats_a_damaged_manifest_as_missing(tmp_path, content) -> None:
    (tmp_path / "build.json").write_text(content)
    assert build._cached(tmp_path) is None


def test_describe_patches_rejects_a_directory(tmp_path) -> None:
    with pytest.raises(HarnessError, match="is not a file"):
        build._describe_patches([tmp_path])
