"""Unit tests for harness.image.scenario: parsing, validation, loading, sentinels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.image import scenario as scenario_module
from harness.image.scenario import (
    SOURCES,
    ActionSpec,
    ImageSpec,
    Scenario,
    host_platform,
    load_scenario,
    parse_scenario,
)
from harness.paths import scenarios_dir

SCENARIO_FILES = sorted(scenarios_dir().glob("*.toml"))


# --------------------------------------------------------------------------- helpers


def minimal(**top) -> dict:
    """The smallest valid scenario, with top-level fields overridden by `top`."""
    data = {"name": "t-minimal", "image": {"name": "annotrace/test"}}
    data.update(top)
    return data


def with_image(**fields) -> dict:
    return minimal(image={"name": "annotrace/test", **fields})


def with_action(**fields) -> dict:
    return minimal(action=fields)


def with_sources(**sources) -> dict:
    return minimal(sources=sources)


def rejected(data: dict, *substrings: str) -> str:
    """parse_scenario(data) must fail with a HarnessError whose message contains every substring."""
    with pytest.raises(HarnessError) as caught:
        parse_scenario(data)
    message = str(caught.value)
    assert message.startswith("scenario <memory>: "), message
    for substring in substrings:
        assert substring in message, f"{substring!r} not in {message!r}"
    return message


def write_toml(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


FULL_TOML = """
name = "t-full"
description = "every field set"
containerd = "v2.1.4"

[image]
name = "annotrace/full"
tag = "v7"
delivery = "import"
platforms = ["linux/amd64", "linux/arm64/v8"]
cmd = ["/bin/sh", "-c", "true"]

[sources.index]
"org.example.index" = "idx"

[sources.manifest]
"org.example.b" = "mb"
"org.example.a" = "ma"

[sources.urunc-json]
"com.urunc.unikernel.binary" = "/unikernel/app"

[action]
kind = "create-start"
rm = false
runtime_flag = "label"
"""


# --------------------------------------------------------------------------- valid scenarios


def test_minimal_scenario_gets_documented_defaults():
    parsed = parse_scenario(minimal())

    assert parsed.name == "t-minimal"
    assert parsed.description == ""
    assert parsed.containerd is None
    assert parsed.path is None
    assert parsed.sources == {}
    assert parsed.image == ImageSpec(
        name="annotrace/test", tag="latest", delivery="registry", platforms=(host_platform(),), cmd=None
    )
    assert parsed.action == ActionSpec(kind="run", rm=True, runtime_flag="annotation")
    assert parsed.action.rm is True


def test_default_platform_follows_the_host(monkeypatch):
    monkeypatch.setattr(scenario_module.host, "machine", lambda: "aarch64")
    assert host_platform() == "linux/arm64"
    assert parse_scenario(minimal()).image.platforms == ("linux/arm64",)

    monkeypatch.setattr(scenario_module.host, "machine", lambda: "x86_64")
    assert parse_scenario(minimal()).image.platforms == ("linux/amd64",)

    monkeypatch.setattr(scenario_module.host, "machine", lambda: "riscv64")
    assert host_platform() == "linux/riscv64"


def test_full_scenario_file_parses_every_field(tmp_path):
    path = write_toml(tmp_path, FULL_TOML)

    parsed = load_scenario(str(path))

    assert parsed == Scenario(
        name="t-full",
        description="every field set",
        containerd="v2.1.4",
        image=ImageSpec(
            name="annotrace/full",
            tag="v7",
            delivery="import",
            platforms=("linux/amd64", "linux/arm64/v8"),
            cmd=("/bin/sh", "-c", "true"),
        ),
        action=ActionSpec(kind="create-start", rm=False, runtime_flag="label"),
        sources={
            "index": {"org.example.index": "idx"},
            "manifest": {"org.example.a": "ma", "org.example.b": "mb"},
            "urunc-json": {"com.urunc.unikernel.binary": "/unikernel/app"},
        },
        path=path,
    )


def test_parse_records_the_given_path():
    assert parse_scenario(minimal(), "/some/where.toml").path == Path("/some/where.toml")


@pytest.mark.parametrize("tag", [3, "", "a b", "-lead", "x" * 129])
def test_bad_tag(tag):
    rejected(with_image(tag=tag), "[image].tag", "is not a valid tag")


@pytest.mark.parametrize("name", ["Annotrace/Seed", "a//b", "/abs", "a b", "trailing/"])
def test_bad_repository_name(name):
    rejected(with_image(name=name), "[image].name", "lowercase repository path")


def test_duplicate_platforms():
    rejected(with_image(platforms=["linux/amd64", "linux/amd64"]), "lists the same platform twice")


# --------------------------------------------------------------------------- validation errors


def test_unknown_top_level_field():
    rejected(minimal(bogus=1), "unknown field(s) bogus in the top level", "allowed: action, containerd")


def test_unknown_image_field():
    rejected(with_image(colour="red"), "unknown field(s) colour in [image]", "allowed: cmd, delivery, name")


def test_unknown_action_field():
    rejected(with_action(retries=3), "unknown field(s) retries in [action]", "allowed: kind, rm, runtime_flag")


def test_unknown_source_name():
    rejected(
        with_sources(labels={"a": "b"}),
        "unknown source(s) labels in [sources]",
        "known: index, index-descriptor, manifest, config-label, urunc-json, runtime-flag",
    )


@pytest.mark.parametrize("name", [None, "", 5])
def test_missing_or_bad_name(name):
    data = minimal()
    if name is None:
        del data["name"]
    else:
        data["name"] = name
    rejected(data, "`name` is required")


@pytest.mark.parametrize("image", [None, "annotrace/test", ["annotrace/test"]])
def test_missing_image_table(image):
    data = minimal()
    if image is None:
        del data["image"]
    else:
        data["image"] = image
    rejected(data, "an [image] table is required")


def test_missing_image_name():
    rejected(minimal(image={"tag": "v1"}), "[image].name is required")


def test_bad_delivery():
    rejected(with_image(delivery="carrier-pigeon"), "[image].delivery 'carrier-pigeon' is not one of registry, import")


def test_bad_action_kind():
    rejected(with_action(kind="exec"), "[action].kind 'exec' is not one of run, create-start")


def test_bad_runtime_flag():
    rejected(with_action(runtime_flag="env"), "[action].runtime_flag 'env' is not one of annotation, label")


@pytest.mark.parametrize("rm", ["yes", 1, 0])
def test_rm_must_be_bool(rm):
    rejected(with_action(rm=rm), "[action].rm must be true or false")


def test_action_must_be_a_table():
    rejected(minimal(action="run"), "[action] must be a table")


def test_sources_must_be_a_table():
    rejected(minimal(sources=["index"]), "[sources] must be a table of source tables")


def test_source_must_be_a_table():
    rejected(with_sources(manifest="value"), "[sources.manifest] must be a table")


@pytest.mark.parametrize("value", [1, True, ["x"], {"nested": "x"}])
def test_non_string_annotation_value(value):
    rejected(with_sources(manifest={"org.example.k": value}), "[sources.manifest].org.example.k must be a non-empty string")


def test_empty_annotation_value():
    rejected(with_sources(index={"org.example.k": ""}), "[sources.index].org.example.k must be a non-empty string")


@pytest.mark.parametrize("key", ["has space", "tab\there", "new\nline", "a=b", "=", ""])
def test_invalid_annotation_key(key):
    rejected(
        with_sources(**{"config-label": {key: "v"}}),
        f"[sources.config-label] key {key!r} is not a valid annotation key",
    )


def test_urunc_json_key_needs_full_prefix():
    rejected(
        with_sources(**{"urunc-json": {"com.urunc.unikernel.binary": "b", "binary": "x"}}),
        "[sources.urunc-json] key 'binary' must be a full com.urunc.unikernel.* name",
    )


def test_urunc_prefix_is_only_required_for_urunc_json():
    parsed = parse_scenario(with_sources(manifest={"binary": "x"}))
    assert parsed.sources == {"manifest": {"binary": "x"}}


@pytest.mark.parametrize("platform", ["linux", "linux/", "/amd64", "linux//v8", "linux/arm64/v8/extra", ""])
def test_bad_platform_string(platform):
    rejected(
        with_image(platforms=["linux/amd64", platform]),
        f"platform {platform!r} must look like os/arch or os/arch/variant",
    )


def test_non_string_platform():
    rejected(with_image(platforms=[64]), "platform 64 must look like os/arch")


@pytest.mark.parametrize("platforms", [[], "linux/amd64"])
def test_platforms_must_be_non_empty_list(platforms):
    rejected(with_image(platforms=platforms), "[image].platforms must be a non-empty list")


@pytest.mark.parametrize("cmd", [[], "sh", ["sh", 1]])
def test_bad_cmd(cmd):
    rejected(with_image(cmd=cmd), "[image].cmd must be a non-empty list of strings")


def test_containerd_must_be_a_string():
    rejected(minimal(containerd=2.1), "`containerd` must be a version string")


def test_invalid_toml_file(tmp_path):
    path = write_toml(tmp_path, 'name = "broken\n[image\n')

    with pytest.raises(HarnessError) as caught:
        load_scenario(str(path))

    message = str(caught.value)
    assert message.startswith(f"scenario {path}: is not valid TOML (")
    assert message.endswith("); fix the syntax")


def test_load_validates_file_contents_and_names_the_file(tmp_path):
    path = write_toml(tmp_path, 'name = "x"\nbogus = 1\n[image]\nname = "a/b"\n')

    with pytest.raises(HarnessError, match=re.escape(f"scenario {path}: unknown field(s) bogus in the top level")):
        load_scenario(str(path))


def test_unknown_scenario_name():
    with pytest.raises(HarnessError) as caught:
        load_scenario("no-such")

    message = str(caught.value)
    assert message.startswith("no scenario 'no-such': give a path to a .toml file or one of: ")
    known = message.split("one of: ", 1)[1]
    assert known == ", ".join(sorted(p.stem for p in SCENARIO_FILES))


# --------------------------------------------------------------------------- sentinels


SENTINEL_SOURCES = {
    "index": {"org.example.b": "same", "org.example.a": "same"},
    "index-descriptor": {"org.example.a": "same"},
    "manifest": {"org.example.a": "same", "com.urunc.unikernel.hypervisor": "qemu"},
    "config-label": {"org.example.a": "same"},
    "urunc-json": {"com.urunc.unikernel.binary": "/unikernel/app"},
    "runtime-flag": {"org.example.a": "same"},
}


def sentinel_scenario() -> Scenario:
    return parse_scenario(with_sources(**SENTINEL_SOURCES))


def test_one_sentinel_per_source_and_key_in_flow_order():
    made = sentinel_scenario().sentinels("n0")

    expected = [(src, key) for src in SOURCES for key in sorted(SENTINEL_SOURCES[src])]
    assert [(s.source, s.key) for s in made] == expected
    assert len(made) == 8
    assert {(s.source, s.key): s.nominal for s in made} == {
        (src, key): nominal for src, table in SENTINEL_SOURCES.items() for key, nominal in table.items()
    }


def test_sentinel_values_are_unique_even_for_equal_nominals():
    made = sentinel_scenario().sentinels()

    values = [s.value for s in made]
    assert len(set(values)) == len(values)
    # no value is hidden inside another (they are grepped for in containerd's records)
    for value in values:
        assert [other for other in values if value in other] == [value]


def test_sentinel_value_contains_nominal_and_source():
    for sentinel in sentinel_scenario().sentinels():
        assert sentinel.value.startswith(sentinel.nominal + "-atr-")
        assert sentinel.value.endswith(f"-{sentinel.source}")


def test_fixed_nonce_gives_exact_deterministic_values():
    first = sentinel_scenario().sentinels("cafe")
    second = sentinel_scenario().sentinels("cafe")

    assert first == second
    assert [s.value for s in first] == [
        "same-atr-cafe00-index",
        "same-atr-cafe01-index",
        "same-atr-cafe02-index-descriptor",
        "qemu-atr-cafe03-manifest",
        "same-atr-cafe04-manifest",
        "same-atr-cafe05-config-label",
        "/unikernel/app-atr-cafe06-urunc-json",
        "same-atr-cafe07-runtime-flag",
    ]


def test_random_nonce_differs_between_calls():
    scenario = sentinel_scenario()
    first = [s.value for s in scenario.sentinels()]
    second = [s.value for s in scenario.sentinels()]

    assert set(first).isdisjoint(second)
    nonce = re.fullmatch(r"same-atr-([0-9a-f]{6})00-index", first[0])
    assert nonce, first[0]


def test_no_sources_means_no_sentinels():
    assert parse_scenario(minimal()).sentinels("x") == []


def test_sentinel_to_dict():
    sentinel = sentinel_scenario().sentinels("ab")[0]
    assert sentinel.to_dict() == {
        "source": "index",
        "key": "org.example.a",
        "value": "same-atr-ab00-index",
        "nominal": "same",
    }


# --------------------------------------------------------------------------- shipped scenarios


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_shipped_scenario_loads(path):
    by_path = load_scenario(str(path))
    by_name = load_scenario(path.stem)

    assert by_path.path == path
    assert by_name == by_path
    assert by_path.name
    assert by_path.image.platforms
    sentinels = by_path.sentinels("t")
    assert len({s.value for s in sentinels}) == len(sentinels) == sum(len(t) for t in by_path.sources.values())


def test_probes_table_adds_patterns_per_process():
    parsed = parse_scenario(minimal(probes={"ctr": [r"core/images\.Config$"], "containerd": [r"NewBundle$"]}))
    assert parsed.probes == {"ctr": (r"core/images\.Config$",), "containerd": (r"NewBundle$",)}


@pytest.mark.parametrize("probes, message", [
    ({"shim": ["x"]}, "unknown field(s) shim in [probes]"),
    ({"ctr": "x"}, "[probes].ctr must be a list of regex strings"),
    ({"ctr": ["("]}, "is not a valid regex"),
])
def test_bad_probes_table(probes, message):
    rejected(minimal(probes=probes), message)
