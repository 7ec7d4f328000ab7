"""Scenario files: TOML that names an image, its annotation sources, and what to run.

Every (source, key) pair gets its own unique sentinel value, so each can be
followed through containerd separately. See scenarios/seed-ctr-run.toml.
"""

from __future__ import annotations

import platform as host
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import scenarios_dir

# Where an annotation can come from, in the order an image is read.
SOURCES = ("index", "index-descriptor", "manifest", "config-label", "urunc-json", "runtime-flag")
# Where it can be seen, in flow order (BRIEF "Sentinels and stages").
STAGES = ("index", "manifest", "config", "image-record", "container-labels", "spec", "bundle", "runtime")

URUNC_PREFIX = "com.urunc.unikernel."
DELIVERIES = ("registry", "import")
ACTIONS = ("run", "create-start")
RUNTIME_FLAGS = ("annotation", "label")

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_platform() -> str:
    """The platform containerd on this machine pulls and runs by default."""
    return f"linux/{_ARCH.get(host.machine(), host.machine())}"


_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TOP_FIELDS = {"name", "description", "containerd", "image", "sources", "action", "probes"}
PROBE_PROCESSES = ("ctr", "containerd", "containerd-shim-runc-v2")  # harness.probes.processes.PROCESSES
_IMAGE_FIELDS = {"name", "tag", "delivery", "platforms", "cmd"}
_ACTION_FIELDS = {"kind", "rm", "runtime_flag"}


@dataclass(frozen=True)
class Sentinel:
    """One annotation value followed through containerd."""

    source: str
    key: str
    nominal: str  # the value the scenario declares
    value: str  # the unique value actually written

    def to_dict(self) -> dict:
        return {"source": self.source, "key": self.key, "value": self.value, "nominal": self.nominal}


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str = "latest"
    delivery: str = "registry"
    platforms: tuple[str, ...] = field(default_factory=lambda: (host_platform(),))
    cmd: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ActionSpec:
    kind: str = "run"
    rm: bool = True
    runtime_flag: str = "annotation"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    containerd: str | None
    image: ImageSpec
    action: ActionSpec
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None
    probes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # extra probe regexes per process

    def sentinels(self, nonce: str | None = None) -> list[Sentinel]:
        """Unique values for this run. `nonce` fixes them (tests); otherwise random."""
        nonce = nonce or secrets.token_hex(3)
        made = []
        for source in SOURCES:
            for key, nominal in sorted(self.sources.get(source, {}).items()):
                made.append(Sentinel(source, key, nominal, sentinel_value(nominal, source, nonce, len(made))))
        return made


def sentinel_value(nominal: str, source: str, nonce: str, number: int) -> str:
    """`{nominal}-atr-{nonce}{number:02d}-{source}`: unique per run and sentinel.

    What tells one sentinel from another (the nonce and its number) comes right after the
    marker, so a value cut short or stripped of its front keeps a piece only it has (see
    harness.probes.matching)."""
    return f"{nominal}-atr-{nonce}{number:02d}-{source}"


def _fail(path: Path | str, message: str) -> HarnessError:
    return HarnessError(f"scenario {path}: {message}")


def _check_fields(path: Path | str, where: str, table: dict, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(path, f"unknown field(s) {', '.join(unknown)} in {where}; allowed: {', '.join(sorted(allowed))}")


def _string_map(path: Path | str, where: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, f"{where} must be a table of key = \"value\"")
    for key, item in value.items():
        if not isinstance(item, str) or not item:
            raise _fail(path, f"{where}.{key} must be a non-empty string")
        if not key or any(c.isspace() for c in key) or "=" in key:
            raise _fail(path, f"{where} key {key!r} is not a valid annotation key")
    return dict(value)


def _platform(path: Path | str, value: object) -> str:
    if not isinstance(value, str) or not 2 <= len(value.split("/")) <= 3 or not all(value.split("/")):
        raise _fail(path, f"platform {value!r} must look like os/arch or os/arch/variant, e.g. linux/amd64")
    return value


def parse_scenario(data: dict, path: Path | str = "<memory>") -> Scenario:
    """Validate a scenario's TOML data; errors say which field and what is allowed."""
    _check_fields(path, "the top level", data, _TOP_FIELDS)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(path, "`name` is required (a short id such as seed-ctr-run)")
    image_table = data.get("image")
    if not isinstance(image_table, dict):
        raise _fail(path, "an [image] table is required (with at least name = \"...\")")
    _check_fields(path, "[image]", image_table, _IMAGE_FIELDS)
    if not isinstance(image_table.get("name"), str) or not image_table["name"]:
        raise _fail(path, "[image].name is required, e.g. \"annotrace/seed\"")
    delivery = image_table.get("delivery", "registry")
    if delivery not in DELIVERIES:
        raise _fail(path, f"[image].delivery {delivery!r} is not one of {', '.join(DELIVERIES)}")
    platforms = image_table.get("platforms", [host_platform()])
    if not isinstance(platforms, list) or not platforms:
        raise _fail(path, "[image].platforms must be a non-empty list such as [\"linux/amd64\"]")
    cmd = image_table.get("cmd")
    if cmd is not None and (not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd) or not cmd):
        raise _fail(path, "[image].cmd must be a non-empty list of strings")
    tag = image_table.get("tag", "latest")
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise _fail(path, f"[image].tag {tag!r} is not a valid tag (letters, digits, _ . -, at most 128)")
    if not _REPOSITORY.match(image_table["name"]):
        raise _fail(path, f"[image].name {image_table['name']!r} must be a lowercase repository path such as annotrace/seed")
    if len(set(platforms)) != len(platforms):
        raise _fail(path, "[image].platforms lists the same platform twice")
    image = ImageSpec(
        name=image_table["name"],
        tag=tag,
        delivery=delivery,
        platforms=tuple(_platform(path, p) for p in platforms),
        cmd=tuple(cmd) if cmd else None,
    )

    sources_table = data.get("sources", {})
    if not isinstance(sources_table, dict):
        raise _fail(path, "[sources] must be a table of source tables")
    unknown = sorted(set(sources_table) - set(SOURCES))
    if unknown:
        raise _fail(path, f"unknown source(s) {', '.join(unknown)} in [sources]; known: {', '.join(SOURCES)}")
    sources = {src: _string_map(path, f"[sources.{src}]", table) for src, table in sources_table.items()}
    for key in sources.get("urunc-json", {}):
        if not key.startswith(URUNC_PREFIX):
            raise _fail(path, f"[sources.urunc-json] key {key!r} must be a full {URUNC_PREFIX}* name")

    action_table = data.get("action", {})
    if not isinstance(action_table, dict):
        raise _fail(path, "[action] must be a table")
    _check_fields(path, "[action]", action_table, _ACTION_FIELDS)
    action = ActionSpec(
        kind=action_table.get("kind", "run"),
        rm=action_table.get("rm", True),
        runtime_flag=action_table.get("runtime_flag", "annotation"),
    )
    if action.kind not in ACTIONS:
        raise _fail(path, f"[action].kind {action.kind!r} is not one of {', '.join(ACTIONS)}")
    if action.runtime_flag not in RUNTIME_FLAGS:
        raise _fail(path, f"[action].runtime_flag {action.runtime_flag!r} is not one of {', '.join(RUNTIME_FLAGS)}")
    if not isinstance(action.rm, bool):
        raise _fail(path, "[action].rm must be true or false")

    probes_table = data.get("probes", {})
    if not isinstance(probes_table, dict):
        raise _fail(path, "[probes] must be a table such as ctr = [\"regex\"], containerd = [...]")
    _check_fields(path, "[probes]", probes_table, set(PROBE_PROCESSES))
    probes: dict[str, tuple[str, ...]] = {}
    for process, patterns in probes_table.items():
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise _fail(path, f"[probes].{process} must be a list of regex strings")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise _fail(path, f"[probes].{process} pattern {pattern!r} is not a valid regex ({exc})") from exc
        probes[process] = tuple(patterns)

    containerd = data.get("containerd")
    if containerd is not None and not isinstance(containerd, str):
        raise _fail(path, "`containerd` must be a version string such as \"v2.1.4\"")
    return Scenario(
        name=name,
        description=str(data.get("description", "")),
        containerd=containerd,
        image=image,
        action=action,
        sources=sources,
        path=Path(path) if path != "<memory>" else None,
        probes=probes,
    )


def find_scenario(name_or_path: str) -> Path:
    """A path, or the name of a file in scenarios/ (with or without .toml)."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    for option in (scenarios_dir() / name_or_path, scenarios_dir() / f"{name_or_path}.toml"):
        if option.is_file():
            return option
    known = ", ".join(sorted(p.stem for p in scenarios_dir().glob("*.toml")))
    raise HarnessError(f"no scenario {name_or_path!r}: give a path to a .toml file or one of: {known}")


def load_scenario(name_or_path: str) -> Scenario:
    path = find_scenario(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"is not valid TOML ({exc}); fix the syntax") from exc
    return parse_scenario(data, path)
