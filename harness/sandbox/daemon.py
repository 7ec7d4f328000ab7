"""An isolated containerd daemon per run, owned by a context manager.

Isolation:
- its own root, state, sockets and config under a private temp dir (mode 0700);
- a private mount namespace (`unshare --mount`) with a tmpfs over /run, because the
  shim always puts its socket under /run/containerd/s and runc's state under
  /run/containerd/runc: inside the namespace that is ours, the host's
  /run/containerd is never touched, and every mount (rootfs overlays) dies with
  the namespace;
- its own containerd namespace, so container cgroups are /<namespace>/<id>;
- the recorder first on its PATH as `runc`, so the shim records every bundle it hands
  to the runtime, and the shim wrapper as `containerd-shim-runc-v2`, which keeps the
  bundle as the daemon wrote it (and holds the shim for a debugger when asked).

Teardown runs on success, error and Ctrl-C: tasks and containers are removed
through the daemon, the daemon is stopped, any shim or container process left is
killed, cgroups are removed and the temp dir is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.console import step, warn
from harness.errors import HarnessError, ToolMissing
from harness.sandbox.recorder import install_recorder
from harness.sandbox.shim import SHIM_BINARY, install_shim_wrapper
from harness.toolchain.build import Build

READY_TIMEOUT = 60.0
CGROUP_ROOT = Path("/sys/fs/cgroup")

_CONFIG = """version = 2
root = "{root}"
state = "{state}"
# CRI and NRI would reach outside the sandbox (/etc/cni, /var/run/nri); this harness drives ctr.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = "{debug_address}"
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""

# With the CRI plugin on (annotrace engines): only pods with host networking are run, so no
# CNI plugin is called; CNI dirs point into the sandbox anyway. The pause image is built
# locally and imported (no pull). `restrict_oom_score_adj`: containers here may not lower
# their OOM score, which the pod sandbox asks for by default.
_CRI_CONFIG = """
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{opt}/cni/bin"
    conf_dir = "{opt}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = {pod_annotations}
    container_annotations = {container_annotations}
"""


@dataclass(frozen=True)
class CriOptions:
    """The CRI plugin's settings for a sandbox that serves CRI (its namespace is k8s.io)."""

    sandbox_image: str
    pod_annotations: tuple[str, ...] = ()  # the runtime handler's passthrough globs
    container_annotations: tuple[str, ...] = ()



class Sandbox:
    """`with Sandbox(build, results_dir) as sandbox:` gives a ready daemon."""

    def __init__(self, build: Build, results_dir: Path, namespace: str = "annotrace", keep: bool = False,
                 daemon_env: dict[str, str] | None = None, cri: CriOptions | None = None) -> None:
        self.build = build
        self.cri = cri  # None: the CRI plugin is off
        self.daemon_env = daemon_env or {}  # extra environment for the daemon (the gotrace backend's)
        self.results_dir = results_dir
        self.namespace = namespace
        self.keep = keep
        self.workdir: Path | None = None
        self.daemon: subprocess.Popen | None = None

    # Paths inside the private work dir.
    @property
    def address(self) -> Path:
        return self._work("containerd.sock")

    @property
    def state_dir(self) -> Path:
        return self._work("state")

    @property
    def root_dir(self) -> Path:
        return self._work("root")

    @property
    def fifo_dir(self) -> Path:
        return self._work("fifo")

    @property
    def recordings(self) -> Path:
        return self.results_dir / "recordings"

    @property
    def shim_attach_dir(self) -> Path:
        """Where the shim wrapper asks for a debugger (see harness/sandbox/shim.py)."""
        return self._work("shim-attach")

    @property
    def log_path(self) -> Path:
        return self.results_dir / "daemon.log"

    @property
    def ctr_path(self) -> Path:
        return self.build.binary("ctr")

    def bundle_dir(self, container_id: str) -> Path:
        """Where the daemon writes a task's bundle (same path v1.6 to v2.x)."""
        return self.state_dir / "io.containerd.runtime.v2.task" / self.namespace / container_id

    def _work(self, name: str) -> Path:
        assert self.workdir is not None, "the sandbox is not started"
        return self.workdir / name

    # Life cycle.
    def __enter__(self) -> Sandbox:
        for tool in ("unshare", "mount"):
            if shutil.which(tool) is None:
                raise ToolMissing(tool, "install util-linux and mount (scripts/setup.sh does)")
        if os.geteuid() != 0:
            raise HarnessError("annotrace must run as root: containerd, runc and overlay mounts need it (try sudo)")
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="annotrace-", dir="/var/tmp"))
        try:
            self._start()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._teardown()

    def _start(self) -> None:
        bin_dir = self._work("bin")
        install_recorder(bin_dir, self.recordings)
        install_shim_wrapper(bin_dir, self.build.binary(SHIM_BINARY), self.recordings, self.shim_attach_dir)
        for directory in (self.root_dir, self.state_dir, self.fifo_dir, self._work("opt")):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = self._work("config.toml")
        text = _CONFIG.format(root=self.root_dir, state=self.state_dir, address=self.address,
                              debug_address=self._work("debug.sock"), opt=self._work("opt"))
        if self.cri is not None:
            text = text.replace('  "io.containerd.grpc.v1.cri",\n  "io.containerd.cri.v1.images",\n'
                                '  "io.containerd.cri.v1.runtime",\n', "")
            text += _CRI_CONFIG.format(sandbox_image=self.cri.sandbox_image, opt=self._work("opt"),
                                       pod_annotations=json.dumps(list(self.cri.pod_annotations)),
                                       container_annotations=json.dumps(list(self.cri.container_annotations)))
        config.write_text(text)
        shutil.copy(config, self.results_dir / "containerd-config.toml")
        env = dict(os.environ)
        env["PATH"] = f"{bin_dir}:{self.build.bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        env.pop("CONTAINERD_ADDRESS", None)
        env.pop("NOTIFY_SOCKET", None)  # no systemd notifications from the sandbox
        env.update(self.daemon_env)
        containerd = self.build.binary("containerd")
        # Inside the new mount namespace: a private /run, then exec the daemon (its pid is ours).
        inner = 'mount -t tmpfs -o mode=0755,size=64m annotrace-run /run && mkdir -p /run/containerd && exec "$0" "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", inner,
                   str(containerd), "--config", str(config)]
        step(f"starting containerd {self.build.version} in {self.workdir} (namespace {self.namespace})")
        log = self.log_path.open("ab")
        self.daemon = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True)
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.daemon is not None
            if self.daemon.poll() is not None:
                raise HarnessError(f"containerd exited during start-up ({self._log_tail()}); see {self.log_path}")
            if self.address.exists() and self._answers():
                return
            time.sleep(0.2)
        raise HarnessError(f"containerd did not answer on {self.address} within {READY_TIMEOUT:.0f}s; see {self.log_path}")

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.address))
            except OSError:
                return False
        return self.ctr("version", timeout=10, check=False, log=False).returncode == 0

    def _log_tail(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        errors = [line for line in lines if "level=error" in line or "level=fatal" in line]
        return (errors or lines or ["no log"])[-1][:300]

    # Talking to the daemon.
    def ctr_command(self, *args: str) -> list[str]:
        return [str(self.ctr_path), "--address", str(self.address), "--namespace", self.namespace, *args]

    def ctr(self, *args: str, timeout: float = 120, check: bool = True, log: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        command = self.ctr_command(*args)
        if log:
            self.log_command(command)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=input,
                                  env=self.client_env())
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"`ctr {' '.join(args)}` did not finish within {timeout:.0f}s") from exc
        if check and proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise HarnessError(f"`ctr {' '.join(args)}` failed: {detail}")
        return proc

    def client_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINERD_SNAPSHOTTER"):
            env.pop(name, None)
        return env

    def log_command(self, command: list[str]) -> None:
        with (self.results_dir / "commands.log").open("a") as handle:
            handle.write(" ".join(command) + "\n")

    # Teardown.
    def _teardown(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self._remove_containers()
            self._stop_daemon()
        self._kill_leftovers()
        self._remove_cgroups()
        if self.workdir is not None:
            self._unmount_leftovers()
            if self.keep:
                step(f"sandbox kept in {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        self.daemon = None

    def _remove_containers(self) -> None:
        try:
            tasks = self.ctr("tasks", "ls", "-q", timeout=15, check=False, log=False).stdout.split()
            for task in tasks:
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, timeout=15, check=False, log=False)
                self.ctr("tasks", "delete", "-f", task, timeout=30, check=False, log=False)
            for container in self.ctr("containers", "ls", "-q", timeout=15, check=False, log=False).stdout.split():
                self.ctr("containers", "delete", container, timeout=30, check=False, log=False)
        except HarnessError as exc:
            warn(f"could not remove containers cleanly: {exc}")

    def _stop_daemon(self) -> None:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait(timeout=10)

    def _our_processes(self) -> list[int]:
        """Shims (their command line names our socket) and containers (their cgroup is ours)."""
        marker = str(self.workdir) if self.workdir else None
        cgroup_marker = f"/{self.namespace}/"
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cgroup = (entry / "cgroup").read_text()
            except OSError:
                continue
            if (marker and marker in cmdline) or cgroup_marker in cgroup:
                found.append(int(entry.name))
        return found

    def _kill_leftovers(self) -> None:
        for attempt in range(20):
            pids = self._our_processes()
            if not pids:
                return
            if attempt == 0:
                warn(f"killing {len(pids)} process(es) left by the sandbox: {pids}")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.25)
        warn(f"processes still alive after teardown: {self._our_processes()}")

    def _remove_cgroups(self) -> None:
        top = CGROUP_ROOT / self.namespace
        if not top.is_dir():
            return
        for child in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if child.is_dir():
                try:
                    child.rmdir()
                except OSError:
                    pass
        try:
            top.rmdir()
        except OSError as exc:
            warn(f"could not remove cgroup {top}: {exc}")

    def _unmount_leftovers(self) -> None:
        """Mounts live in the private namespace; this only guards against surprises on the host."""
        marker = str(self.workdir)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for mountpoint in sorted((m for m in mounts if m.startswith(marker)), key=len, reverse=True):
            warn(f"unmounting leftover {mountpoint}")
            subprocess.run(["umount", "-l", mountpoint], check=False)
