"""Unit tests for harness.sandbox.recorder: run the generated sh script against a fake runc.

The fake runc writes each argument it receives on its own line (then an end marker)
and exits 7, so the tests can check that the recorder exec'd it with the exact argv
and passed its exit code through. Nothing here needs a daemon or a real runc.
"""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import ToolMissing
from harness.sandbox import recorder as recorder_module
from harness.sandbox.recorder import Recording, install_recorder, recordings_in

FAKE_EXIT = 7
END = "--end-of-call--"
CONFIG = {"ociVersion": "1.2.0", "annotations": {"com.test.runtime": "rt-needle"}, "process": {"args": ["/bin/sh"]}}
# Bytes matter: odd spacing and no trailing newline must survive the copy.
CONFIG_BYTES = (json.dumps(CONFIG, indent=3) + "  ").encode()
URUNC_BYTES = b'{"com.urunc.unikernel.hypervisor": "aHZ0"}\n'


@dataclass
class Env:
    script: Path
    recordings: Path
    argv_log: Path
    base: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.script), *args], capture_output=True, text=True, timeout=30)

    def calls(self) -> list[list[str]]:
        """Argument vectors the fake runc received, in order."""
        if not self.argv_log.exists():
            return []
        calls, current = [], []
        for line in self.argv_log.read_text().split("\n")[:-1]:
            if line == END:
                calls.append(current)
                current = []
            else:
                current.append(line)
        assert current == []
        return calls

    def recording_dirs(self) -> list[Path]:
        return sorted(p for p in self.recordings.iterdir() if p.is_dir())

    def invocations(self) -> list[str]:
        return (self.recordings / "invocations.log").read_text().splitlines()


def write_fake_runc(path: Path, argv_log: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f"LOG={shlex.quote(str(argv_log))}\n"
        'for a in "$@"; do printf \'%s\\n\' "$a" >> "$LOG"; done\n'
        f"printf '%s\\n' {shlex.quote(END)} >> \"$LOG\"\n"
        f"exit {FAKE_EXIT}\n"
    )
    path.chmod(0o755)
    return path


def make_env(base: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    argv_log = base / "fake-runc-argv.txt"
    fake = write_fake_runc(base / "real bin" / "runc", argv_log)
    monkeypatch.setattr(recorder_module, "real_runc", lambda: str(fake))
    recordings = base / "recordings"
    script = install_recorder(base / "bin", recordings)
    return Env(script, recordings, argv_log, base)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return make_env(tmp_path, monkeypatch)


def make_bundle(path: Path, with_urunc: bool = True, config: bytes = CONFIG_BYTES) -> Path:
    (path / "rootfs").mkdir(parents=True)
    (path / "config.json").write_bytes(config)
    if with_urunc:
        (path / "rootfs" / "urunc.json").write_bytes(URUNC_BYTES)
    return path


def create_args(bundle: Path, cid: str = "cid") -> list[str]:
    return ["--root", "/x", "--log", "/y/log.json", "--log-format", "json",
            "create", "--bundle", str(bundle), "--pid-file", "/z", cid]


# --------------------------------------------------------------------------- install


def test_install_writes_executable_runc(env: Env) -> None:
    assert env.script == env.base / "bin" / "runc"
    assert env.script.stat().st_mode & stat.S_IXUSR
    assert env.recordings.is_dir()
    text = env.script.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f"REAL_RUNC={shlex.quote(str(env.base / 'real bin' / 'runc'))}\n" in text


def test_install_without_runc_raises_tool_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise ToolMissing("runc", "install it")

    monkeypatch.setattr(recorder_module, "real_runc", missing)
    with pytest.raises(ToolMissing, match="runc"):
        install_recorder(tmp_path / "bin", tmp_path / "rec")
    assert not (tmp_path / "bin" / "runc").exists()


# --------------------------------------------------------------------------- create


def test_create_records_and_execs_real_runc(env: Env, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    args = create_args(bundle)
    proc = env.run(*args)

    assert proc.returncode == FAKE_EXIT
    assert env.calls() == [args]

    (out,) = env.recording_dirs()
    assert out.name.endswith("-create")
    stamp, pid, action = out.name.rsplit("-", 2)
    assert stamp.isdigit() and pid.isdigit() and action == "create"
    assert (out / "config.json").read_bytes() == CONFIG_BYTES
    assert (out / "rootfs-urunc.json").read_bytes() == URUNC_BYTES
    assert (out / "bundle").read_text() == f"{bundle}\n"
    assert sorted(p.name for p in out.iterdir()) == ["bundle", "config.json", "rootfs-urunc.json"]
    assert env.invocations() == [" ".join(args)]


def test_create_with_bundle_equals_form(env: Env, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b2", with_urunc=False)
    args = ["--root", "/x", "create", f"--bundle={bundle}", "cid"]
    proc = env.run(*args)
    assert proc.returncode == FAKE_EXIT
    assert env.calls() == [args]
    (out,) = env.recording_dirs()
    assert out.name.endswith("-create")
    assert (out / "config.json").read_bytes() == CONFIG_BYTES
    assert (out / "bundle").read_text().strip() == str(bundle)


def test_create_with_short_bundle_flag(env: Env, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b3")
    env.run("create", "-b", str(bundle), "cid")
    (out,) = env.recording_dirs()
    assert (out / "bundle").read_text().strip() == str(bundle)
    assert (out / "config.json").read_bytes() == CONFIG_BYTES


def test_run_action_is_recorded_as_run(env: Env, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b4")
    proc = env.run("--root", "/x", "run", "--bundle", str(bundle), "cid")
    assert proc.returncode == FAKE_EXIT
    (out,) = env.recording_dirs()
    assert out.name.endswith("-run")
    (recording,) = recordings_in(env.recordings)
    assert recording.action == "run"


def test_bundle_without_urunc_json_copies_only_config(env: Env, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "plain", with_urunc=False)
    env.run(*create_args(bundle))
    (out,) = env.recording_dirs()
    assert not (out / "rootfs-urunc.json").exists()
    assert sorted(p.name for p in out.iterdir()) == ["bundle", "config.json"]
    (recording,) = recordings_in(env.recordings)
    assert recording.urunc_json is None
    assert recording.config_json == out / "config.json"


# --------------------------------------------------------------------------- calls without a bundle


def test_start_is_logged_but_not_recorded(env: Env) -> None:
    args = ["--root", "/x", "--log", "/y/log.json", "--log-format", "json", "start", "cid"]
    proc = env.run(*args)
    assert proc.returncode == FAKE_EXIT
    assert env.calls() == [args]
    assert env.recording_dirs() == []
    assert env.invocations() == [" ".join(args)]
    assert recordings_in(env.recordings) == []


def test_create_with_bundle_lacking_config_is_not_recorded(env: Env, tmp_path: Path) -> None:
    bundle = tmp_path / "empty-bundle"
    bundle.mkdir()
    args = create_args(bundle)
    proc = env.run(*args)
    assert proc.returncode == FAKE_EXIT
    assert env.calls() == [args]
    assert env.recording_dirs() == []
    assert env.invocations() == [" ".join(args)]


def test_bundle_flag_on_a_non_create_action_is_not_recorded(env: Env, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    env.run("delete", "--bundle", str(bundle), "cid")
    assert env.recording_dirs() == []


def test_recorder_passes_stdin_stdout_and_success_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "echo-runc"
    fake.write_text('#!/bin/sh\necho "out:$#:$1"\necho err >&2\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setattr(recorder_module, "real_runc", lambda: str(fake))
    script = install_recorder(tmp_path / "bin", tmp_path / "rec")
    proc = subprocess.run([str(script), "state", "c i d"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout == "out:2:state\n"
    assert proc.stderr == "err\n"


# --------------------------------------------------------------------------- several calls


def test_full_lifecycle_in_call_order(env: Env, tmp_path: Path) -> None:
    first = make_bundle(tmp_path / "first")
    second = make_bundle(tmp_path / "second", with_urunc=False, config=b'{"second": true}')
    sequence = [
        create_args(first, "one"),
        ["--root", "/x", "start", "one"],
        create_args(second, "two"),
        ["--root", "/x", "delete", "--force", "one"],
    ]
    for args in sequence:
        assert env.run(*args).returncode == FAKE_EXIT

    assert env.calls() == sequence
    assert env.invocations() == [" ".join(a) for a in sequence]

    recordings = recordings_in(env.recordings)
    assert [r.action for r in recordings] == ["create", "create"]
    assert [r.bundle for r in recordings] == [str(first), str(second)]
    assert recordings[0].config_json.read_bytes() == CONFIG_BYTES
    assert recordings[1].config_json.read_bytes() == b'{"second": true}'
    assert recordings[0].urunc_json is not None
    assert recordings[0].urunc_json.read_bytes() == URUNC_BYTES
    assert recordings[1].urunc_json is None
    assert all(isinstance(r, Recording) for r in recordings)


def test_recordings_in_sorts_by_name_and_skips_files(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    for name in ("1795839905522851043-20-create", "1795839901487943556-10-run"):
        (rec / name).mkdir(parents=True)
        (rec / name / "config.json").write_text("{}")
    (rec / "1795839905522851043-20-create" / "bundle").write_text("/b/two\n")
    (rec / "invocations.log").write_text("x\n")
    found = recordings_in(rec)
    assert [(r.directory.name, r.action, r.bundle) for r in found] == [
        ("1795839901487943556-10-run", "run", ""),
        ("1795839905522851043-20-create", "create", "/b/two"),
    ]


@pytest.mark.parametrize(
    "dirname",
    ["with space", "it's quoted", 'dq"uote', "dollar $HOME `x` \\back", "semi;colon&amp"],
)
def test_awkward_recordings_and_runc_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dirname: str) -> None:
    base = tmp_path / dirname
    base.mkdir()
    env = make_env(base, monkeypatch)
    bundle = make_bundle(base / "bundle dir")
    args = create_args(bundle)
    proc = env.run(*args)
    assert proc.returncode == FAKE_EXIT, proc.stderr
    assert env.calls() == [args]
    (recording,) = recordings_in(env.recordings)
    assert recording.directory.parent == env.recordings
    assert recording.bundle == str(bundle)
    assert recording.config_json.read_bytes() == CONFIG_BYTES
    assert env.invocations() == [" ".join(args)]
    # nothing leaked outside the recordings dir
    assert sorted(p.name for p in base.iterdir()) == sorted(["bin", "bundle dir", "fake-runc-argv.txt", "real bin", "recordings"])



def test_transcript_recordings_are_set_aside(tmp_path):
    """What the runtime got for the transcript's container must not count in the stage map."""
    from harness.probes.delve.transcript import set_aside_recordings

    recordings = tmp_path / "recordings"
    for name, bundle in (("1-create", "/s/ns/seed-abc"), ("2-create", "/s/ns/seed-abc-p2"), ("3-create", "/s/ns/seed-abc-t")):
        (recordings / name).mkdir(parents=True)
        (recordings / name / "bundle").write_text(bundle + "\n")
        (recordings / name / "config.json").write_text("{}")
    (recordings / "invocations.log").write_text("create ...\n")
    set_aside_recordings(tmp_path, "seed-abc-t")
    assert sorted(p.name for p in recordings.iterdir()) == ["1-create", "2-create", "invocations.log"]
    assert [p.name for p in (tmp_path / "transcript-recordings").iterdir()] == ["3-create"]
