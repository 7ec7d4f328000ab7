"""Flag detection for the built ctr, on ctr's real help text (tests/fixtures/ctr-help)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.actions import ctr_flags, runtime_flag_args
from harness.errors import HarnessError
from harness.image.scenario import parse_scenario

HELP = (Path(__file__).resolve().parents[1] / "fixtures" / "ctr-help" / "run-v2.1.4.txt").read_text()


class RecordedCtr:
    """Answers `ctr run --help` with recorded text; nothing else is asked of it here."""

    def __init__(self, help_text: str, version: str = "v2.1.4") -> None:
        self.help_text = help_text
        self.build = type("BuildInfo", (), {"version": version})()

    def ctr(self, *args, **kwargs):
        assert args[-1] == "--help"
        return subprocess.CompletedProcess(list(args), 0, self.help_text, "")


def scenario(flag: str):
    return parse_scenario({
        "name": "flags",
        "image": {"name": "annotrace/flags"},
        "sources": {"runtime-flag": {"com.urunc.unikernel.hypervisor": "qemu"}, "manifest": {"k": "v"}},
        "action": {"runtime_flag": flag},
    })


def test_ctr_flags_reads_the_real_help_text():
    flags = ctr_flags(RecordedCtr(HELP), "run")
    assert {"--rm", "--annotation", "--label", "--fifo-dir", "--runc-binary", "--snapshotter"} <= flags
    assert "--no-such-flag" not in flags


@pytest.mark.parametrize("flag", ["annotation", "label"])
def test_runtime_flag_values_become_ctr_arguments(flag):
    chosen = scenario(flag)
    sentinels = chosen.sentinels("abc123")
    args = runtime_flag_args(RecordedCtr(HELP), chosen, sentinels, ("run",))
    [value] = [s.value for s in sentinels if s.source == "runtime-flag"]
    assert args == [f"--{flag}", f"com.urunc.unikernel.hypervisor={value}"]


def test_a_flag_the_built_ctr_lacks_is_reported_not_crashed():
    # v2.1.4's help text without its --annotation line stands for an older ctr.
    older = "\n".join(line for line in HELP.splitlines() if "--annotation" not in line)
    chosen = scenario("annotation")
    with pytest.raises(HarnessError) as caught:
        runtime_flag_args(RecordedCtr(older, "v1.5.0"), chosen, chosen.sentinels("abc123"), ("run",))
    message = str(caught.value)
    assert "ctr v1.5.0 has no `run --annotation` flag" in message
    assert 'runtime_flag = "label"' in message


def test_no_runtime_flag_sources_means_no_arguments():
    chosen = parse_scenario({"name": "none", "image": {"name": "annotrace/none"}})
    assert runtime_flag_args(RecordedCtr(""), chosen, [], ("run",)) == []
