"""`annotrace engines`: the same image through several high-level runtimes, side by side.

Engines:
  ctr        containerd's own client (`ctr run --annotation`)
  cri        containerd's CRI plugin driven by crictl: a pod with host networking and a
             locally built pause image, then a container from the scenario image; the
             runtime handler passes no annotations through (containerd's default)
  cri-urunc  the same with the handler's `pod_annotations` / `container_annotations`
             set to urunc's glob (`com.urunc.unikernel.*`)
  nerdctl    nerdctl (built from the module proxy) against the same kind of daemon
  podman     podman from Debian, with the recorder as its OCI runtime (`--runtime`)
  docker     dockerd from Debian (docker.io, with the containerd it manages itself) in a
             private directory, the recorder as its default runtime; the image is pulled
             from the local registry. Docker 20.10 has no `--annotation`: no run-time source.

Every engine gets its own sandbox (or, for podman, its own storage) and the recorder
as the OCI runtime, so `config.json` is captured as the runtime received it even when
the real runtime then fails. The image sources are the scenario's; each engine adds
its own run-time mechanism as sources (`runtime-flag` for `--annotation`, `cri-pod` and
`cri-container` for CRI annotations), each with a key under urunc's prefix and one
outside it. The stage map is the usual one: the engines on containerd fill every
stage, podman only `runtime`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.actions import ActionResult, StateReader, _capture_live, _drive, deliver
from harness.console import step
from harness.errors import HarnessError
from harness.image.layout import layout_tar, write_layout
from harness.image.scenario import Scenario, Sentinel, sentinel_value
from harness.probes.matching import SentinelMatcher
from harness.sandbox import Registry, Sandbox
from harness.sandbox.daemon import CriOptions
from harness.sandbox.recorder import install_recorder
from harness.stagemap import load_documents, save_content, stage_map

ENGINES = ("ctr", "cri", "cri-urunc", "nerdctl", "podman", "docker")
URUNC_GLOB = "com.urunc.unikernel.*"
PAUSE_IMAGE = "docker.io/annotrace/pause:1"
RUN_TIME_KEYS = {"com.urunc.unikernel.block": "runtime-urunc", "com.test.runtime": "runtime-other"}
WORKLOAD = ("/bin/sleep", "600")


@dataclass
class EngineResult:
    engine: str
    version: str
    sentinels: list[dict] = field(default_factory=list)
    error: str | None = None
    results_dir: str = ""
    commands: list[list[str]] = field(default_factory=list)
    events: list = field(default_factory=list)  # delve events (the probed CRI engine)
    probed: list[str] = field(default_factory=list)  # the functions delve watched

    def to_dict(self) -> dict:
        return {"engine": self.engine, "version": self.version, "error": self.error,
                "results_dir": self.results_dir, "probed": self.probed, "sentinels": self.sentinels,
                "commands": self.commands}

    def drop_point(self) -> str:
        """The drop point(s) named for this engine's sentinels, short."""
        drops = sorted({f"{d['function'].rsplit('/', 1)[-1]}:{d['line']}" for s in self.sentinels
                        if (d := s.get("drop"))})
        return ", ".join(drops) if drops else "-"


def run_time_sentinels(engine: str, nonce: str) -> list[Sentinel]:
    """The engine's own way to give annotations at run time, as sentinels."""
    sources = {"cri": ("cri-pod", "cri-container"), "cri-urunc": ("cri-pod", "cri-container"),
               "docker": ()}.get(engine, ("runtime-flag",))
    keys = sorted(RUN_TIME_KEYS.items())
    # Numbered from 50 on: the scenario's own sentinels of the same run use the low numbers.
    return [Sentinel(source, key, nominal, sentinel_value(nominal, source, nonce, 50 + s * len(keys) + k))
            for s, source in enumerate(sources) for k, (key, nominal) in enumerate(keys)]


def _annotation_flags(sentinels: list[Sentinel], source: str = "runtime-flag") -> list[str]:
    return [arg for s in sentinels if s.source == source for arg in ("--annotation", f"{s.key}={s.value}")]


def _run(command: list[str], log: list[list[str]], timeout: float = 120, check: bool = True,
         env: dict | None = None) -> subprocess.CompletedProcess:
    log.append(command)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise HarnessError(f"`{Path(command[0]).name} {' '.join(command[1:3])}` failed: {tail[:300]}")
    return proc


def _image_stages(sandbox: Sandbox, scenario: Scenario, reference: str, out: Path) -> None:
    reader = StateReader(sandbox)
    record = next((r for r in reader.images() if r["name"] == reference), None)
    if record is not None:
        platform = scenario.image.platforms[0] if len(scenario.image.platforms) == 1 else None
        save_content(reader, record, out / "state", platform)


def _engine_ctr(build, scenario, sentinels, out: Path, registry, result: EngineResult) -> None:
    with Sandbox(build, out, namespace=f"annotrace-eng-{secrets.token_hex(2)}") as sandbox:
        layout = write_layout(scenario, sentinels, out / "layout", registry.host if registry else "")
        reference = deliver(sandbox, scenario, layout, registry)
        _image_stages(sandbox, scenario, reference, out)
        container_id = f"eng-ctr-{secrets.token_hex(3)}"
        command = sandbox.ctr_command("run", "--rm", "--fifo-dir", str(sandbox.fifo_dir),
                                      *_annotation_flags(sentinels), reference, container_id)
        action = ActionResult(container_id)
        _drive(sandbox, StateReader(sandbox), command, container_id, out / "state", action)
        result.commands += action.commands
        if action.exit_code not in (0, None):
            raise HarnessError(f"ctr run exited with {action.exit_code}")


def _engine_cri(build, scenario, sentinels, out: Path, registry, result: EngineResult, urunc: bool,
                probe: bool = False) -> None:
    from harness.toolchain.engines import CRICTL, build_module_tool

    crictl = build_module_tool(CRICTL)
    globs = (URUNC_GLOB,) if urunc else ()
    cri = CriOptions(PAUSE_IMAGE, pod_annotations=globs, container_annotations=globs)
    with Sandbox(build, out, namespace="k8s.io", cri=cri) as sandbox:
        pause = replace(scenario, name="pause", sources={},
                        image=replace(scenario.image, name=PAUSE_IMAGE.rsplit(":", 1)[0], tag="1", delivery="archive",
                                      cmd=("/bin/sleep", "2147483647"), platforms=scenario.image.platforms[:1]))
        pause_layout = write_layout(pause, [], out / "pause-layout")
        result.commands.append(sandbox.ctr_command("images", "import", "pause.tar"))
        sandbox.ctr("images", "import", str(layout_tar(pause_layout, out / "pause.tar")), timeout=300)
        if probe and not cri_functions(build):
            step(f"engine cri: no CRI probe plan for containerd {build.version}'s layout; not probing")
            probe = False
        watcher = _CriProbe(sandbox, build, sentinels, out) if probe else None
        try:
            _cri_workload(sandbox, crictl, scenario, sentinels, out, registry, result)
        finally:
            if watcher is not None:
                result.events = watcher.finish()
                result.probed = watcher.functions


def _cri_workload(sandbox, crictl, scenario, sentinels, out: Path, registry, result: EngineResult) -> None:
    layout = write_layout(scenario, sentinels, out / "layout", registry.host if registry else "")
    reference = deliver(sandbox, scenario, layout, registry)
    _image_stages(sandbox, scenario, reference, out)
    endpoint = f"unix://{sandbox.address}"
    base = [str(crictl), "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, "--timeout", "60s"]
    uid = secrets.token_hex(4)
    pod = {"metadata": {"name": f"annotrace-{uid}", "namespace": "annotrace", "uid": uid},
           "annotations": {s.key: s.value for s in sentinels if s.source == "cri-pod"},
           "linux": {"cgroup_parent": f"/annotrace-cri-{uid}",
                     "security_context": {"namespace_options": {"network": 2}}}}  # NODE: no CNI needed
    container = {"metadata": {"name": "workload"}, "image": {"image": reference}, "command": list(WORKLOAD),
                 "annotations": {s.key: s.value for s in sentinels if s.source == "cri-container"}, "linux": {}}
    (out / "pod.json").write_text(json.dumps(pod, indent=2) + "\n")
    (out / "container.json").write_text(json.dumps(container, indent=2) + "\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(out)}  # no /etc/crictl.yaml needed
    pod_id = _run([*base, "runp", str(out / "pod.json")], result.commands, env=env).stdout.strip()
    try:
        container_id = _run([*base, "create", pod_id, str(out / "container.json"), str(out / "pod.json")],
                            result.commands, env=env).stdout.strip()
        _run([*base, "start", container_id], result.commands, env=env)
        _capture_live(sandbox, StateReader(sandbox), container_id, out / "state",
                      _Captured(container_id))
        _run([*base, "rm", "-f", container_id], result.commands, check=False, env=env)
    finally:
        _run([*base, "stopp", pod_id], result.commands, check=False, env=env)
        _run([*base, "rmp", pod_id], result.commands, check=False, env=env)


# The CRI plugin's create path in the daemon (v2 layout): its image store reads each image
# (when it is imported or pulled into k8s.io) and CreateContainer builds the spec from it.
CRI_PROBES = (
    r"/core/images\.(Config|Manifest|\(\*Image\)\.Config)$",
    r"/client\.\(\*image\)\.(Config|Spec)$",
    r"/internal/cri/store/image\.\(\*Store\)\.(getImage|update)$",
    r"/internal/cri/server\.\(\*criService\)\.(CreateContainer|buildContainerSpec)$",
    r"/internal/cri/util\.GetPassthroughAnnotations$",  # the runtime handler's annotation filter
)


def cri_functions(build) -> list[str]:
    """The CRI probe plan resolved against the daemon binary (empty for v1 layouts: not written yet)."""
    import re

    from harness.probes.plan import binary_functions

    names = binary_functions(build.binary("containerd"))
    return sorted({f for f in names for pattern in CRI_PROBES
                   if f.startswith(build.module + "/") and re.search(pattern, f)})


class _CriProbe:
    """delve attached to the CRI daemon for the whole engine run (import, pod, container)."""

    def __init__(self, sandbox: Sandbox, build, sentinels: list[Sentinel], out: Path) -> None:
        import threading

        from harness.probes.delve.backend import DelveSession
        from harness.probes.session import daemon_pid
        from harness.toolchain.tools import install_delve

        self.functions = cri_functions(build)
        self.session = DelveSession(install_delve(), "containerd", sandbox.workdir, out, attach_pid=daemon_pid(sandbox),
                                    source_root=str(build.src_dir))
        self.session.__enter__()
        self.session.trace(self.functions)
        self.session.start_collecting(SentinelMatcher([s.value for s in sentinels]), 1, threading.Lock(), [0], time.monotonic())

    def finish(self) -> list:
        time.sleep(0.5)  # the image store updates on an event, shortly after the import
        self.session.stop_collecting()
        self.session.__exit__(None, None, None)
        if self.session.collected.fault:
            raise HarnessError(f"delve on the CRI daemon: {self.session.collected.fault}")
        return sorted(self.session.collected.events, key=lambda e: e.seq)


def engine_localization(engine: str, events: list, sentinel_docs: list[dict], module: str) -> None:
    """Name the drop point of each sentinel (delve events, the stage map's runtime column)."""
    from harness.graph.localize import Scope, localize
    from harness.investigate import localization_doc

    if engine == "nerdctl":  # a client: what it builds is sent from NewContainer, as with ctr
        sink = ("github.com/containerd/containerd/v2/client.(*Client).NewContainer",)
    else:
        sink = (f"{module}/internal/cri/server.(*criService).CreateContainer",
                f"{module}/internal/cri/store/image.(*Store).update")
    for doc in sentinel_docs:
        # One process is watched here, so the stage map does not narrow where to search.
        loc = localize(doc["value"], events, doc["stages"].get("runtime"), scope=Scope(module, sink_roots=sink))
        doc["verdict"] = loc.status
        doc["localization"] = localization_doc(loc, 1)
        drop = loc.drop
        doc["drop"] = None if drop is None else {
            "function": drop.function, "file": drop.file, "line": drop.line, "process": drop.process,
            "evidence": drop.evidence(f'{doc["key"]}={doc["value"]}'), "call_paths": drop.call_paths}


class _Captured:
    """What _capture_live fills in (a stand-in for ActionResult)."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.captured: dict = {}


def _client_functions(binary: Path) -> list[str]:
    """The containerd client functions of ctr's default probe plan that another Go client (nerdctl) links."""
    import re

    from harness.probes.plan import binary_functions
    from harness.versions import V2_LAYOUT

    names = binary_functions(binary)
    patterns = [p for p in V2_LAYOUT.probes["ctr"] if "/cmd/ctr/" not in p]
    return sorted({f for f in names for p in patterns if re.search(p, f)})


def _engine_nerdctl(build, scenario, sentinels, out: Path, registry, result: EngineResult,
                    probe: bool = False) -> None:
    from harness.toolchain.engines import NERDCTL, build_module_tool

    nerdctl = build_module_tool(NERDCTL)
    namespace = f"annotrace-eng-{secrets.token_hex(2)}"
    with Sandbox(build, out, namespace=namespace) as sandbox:
        layout = write_layout(scenario, sentinels, out / "layout", registry.host if registry else "")
        reference = deliver(sandbox, scenario, layout, registry)
        _image_stages(sandbox, scenario, reference, out)
        data_root = sandbox.workdir / "nerdctl"
        base = [str(nerdctl), "--address", str(sandbox.address), "--namespace", namespace, "--data-root",
                str(data_root), "--cgroup-manager", "cgroupfs", "--cni-path", str(sandbox.workdir / "cni"),
                "--cni-netconfpath", str(sandbox.workdir / "cni-conf"), "--insecure-registry"]
        name = f"eng-nerdctl-{secrets.token_hex(3)}"
        env = {**sandbox.client_env(), "PATH": f"{sandbox.workdir / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}
        run = [*base, "run", "-d", "--net", "host", "--name", name, *_annotation_flags(sentinels), reference,
               *WORKLOAD]
        if probe:
            _nerdctl_under_delve(nerdctl, run, env, sentinels, sandbox, out, result)
        else:
            _run(run, result.commands, env=env)
        try:
            container_id = _run([*base, "inspect", "--format", "{{.ID}}", name], result.commands,
                                env=env).stdout.strip()
            _capture_live(sandbox, StateReader(sandbox), container_id, out / "state", _Captured(container_id))
        finally:
            _run([*base, "rm", "-f", name], result.commands, check=False, env=env)


def _nerdctl_under_delve(nerdctl: Path, command: list[str], env: dict, sentinels, sandbox, out: Path,
                         result: EngineResult) -> None:
    """`nerdctl run -d` exec'd under delve, tracepoints on the containerd client code it links."""
    import threading

    from harness.probes.delve.backend import DelveSession
    from harness.toolchain.tools import install_delve

    functions = _client_functions(nerdctl)
    if not functions:
        raise HarnessError("nerdctl links none of the containerd client functions annotrace probes")
    result.commands.append(command)
    with DelveSession(install_delve(), "nerdctl", sandbox.workdir, out, exec_argv=command, env=env) as session:
        session.trace(functions)
        session.start_collecting(SentinelMatcher([s.value for s in sentinels]), 1, threading.Lock(), [0], time.monotonic())
        if not session.wait_exit(240):
            raise HarnessError("nerdctl did not finish under delve within 240s")
    if session.collected.fault:
        raise HarnessError(f"delve on nerdctl: {session.collected.fault}")
    if session.collected.exit_status not in (0, None):
        raise HarnessError(f"nerdctl run exited with {session.collected.exit_status} under delve; "
                           f"see {session.output_path}")
    result.events = sorted(session.collected.events, key=lambda e: e.seq)
    result.probed = functions


def _engine_podman(build, scenario, sentinels, out: Path, registry, result: EngineResult) -> None:
    from harness.toolchain.engines import podman_binary

    podman = podman_binary()
    work = Path(tempfile.mkdtemp(prefix="annotrace-podman-", dir="/var/tmp"))
    try:
        runtime = install_recorder(work / "bin", out / "recordings")
        layout = write_layout(replace(scenario, image=replace(scenario.image, delivery="archive")), sentinels,
                              out / "layout")
        archive = layout_tar(layout, out / "image.tar")
        base = [str(podman), "--root", str(work / "root"), "--runroot", str(work / "runroot"),
                "--tmpdir", str(work / "tmp"), "--runtime", str(runtime), "--cgroup-manager", "cgroupfs",
                "--events-backend", "none"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(work), "XDG_RUNTIME_DIR": str(work / "xdg"),
               "CONTAINERS_CONF": str(work / "containers.conf")}
        (work / "xdg").mkdir()
        (work / "containers.conf").write_text('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n')
        name = f"eng-podman-{secrets.token_hex(3)}"
        # The recorder writes config.json first, then hands over to runc, which may fail here:
        # the run's exit status is recorded, the recording is what counts.
        proc = _run([*base, "run", "--rm", "--network", "host", "--name", name,
                     *_annotation_flags(sentinels), f"oci-archive:{archive}", *WORKLOAD[:1], "0"],
                    result.commands, timeout=300, check=False, env=env)
        (out / "podman-output.txt").write_text(proc.stdout + proc.stderr)
        if not any((out / "recordings").glob("*")):
            tail = (proc.stderr.strip() or "no output").splitlines()[-1]
            raise HarnessError(f"podman did not reach its OCI runtime: {tail[:300]}")
    finally:
        subprocess.run([str(podman_binary()), "--root", str(work / "root"), "--runroot", str(work / "runroot"),
                        "system", "reset", "--force"], capture_output=True, check=False,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(work)})
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def _engine_docker(build, scenario, sentinels, out: Path, registry, result: EngineResult) -> None:
    import os
    import signal

    dockerd = shutil.which("dockerd")
    docker = shutil.which("docker")
    if dockerd is None or docker is None:
        from harness.errors import ToolMissing

        raise ToolMissing("dockerd", "install docker.io with `apt-get install docker.io` or run scripts/setup.sh")
    work = Path(tempfile.mkdtemp(prefix="annotrace-docker-", dir="/var/tmp"))
    socket = work / "docker.sock"
    daemon = None
    try:
        runtime = install_recorder(work / "bin", out / "recordings")
        command = [dockerd, "--host", f"unix://{socket}", "--data-root", str(work / "root"), "--exec-root",
                   str(work / "exec"), "--pidfile", str(work / "dockerd.pid"), "--iptables=false",
                   "--ip6tables=false", "--bridge=none", "--add-runtime", f"annotrace={runtime}",
                   "--default-runtime", "annotrace"]
        result.commands.append(command)
        log = (out / "dockerd.log").open("ab")
        env = {"PATH": f"{work / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(work)}
        daemon = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                  start_new_session=True)
        log.close()
        client = [docker, "--host", f"unix://{socket}"]
        deadline = time.monotonic() + 60
        while subprocess.run([*client, "version"], capture_output=True, env=env).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"dockerd did not start; see {out / 'dockerd.log'}")
            time.sleep(0.2)
        if registry is None:
            raise HarnessError("the docker engine pulls from the local registry; none was started")
        layout = write_layout(scenario, sentinels, out / "layout", registry.host)
        reference = registry.push(layout, scenario.image.name, scenario.image.tag)
        _run([*client, "pull", reference], result.commands, timeout=300, env=env)
        proc = _run([*client, "run", "--rm", "--network", "none", reference, *WORKLOAD[:1], "0"], result.commands,
                    timeout=300, check=False, env=env)
        (out / "docker-output.txt").write_text(proc.stdout + proc.stderr)
        if not any((out / "recordings").glob("*-create")):
            raise HarnessError(f"docker did not reach its OCI runtime: {(proc.stderr.strip() or 'no output').splitlines()[-1][:300]}")
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True, check=False)
        for mount in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            target = mount.split()[4]
            if target.startswith(str(work)):
                subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def engine_version(engine: str, build) -> str:
    if engine in ("ctr", "cri", "cri-urunc"):
        return f"containerd {build.version}"
    if engine == "nerdctl":
        from harness.toolchain.engines import NERDCTL

        return f"nerdctl {NERDCTL.version} on containerd {build.version}"
    if engine == "docker":
        dockerd = shutil.which("dockerd")
        proc = subprocess.run([dockerd or "dockerd", "--version"], capture_output=True, text=True, check=False)
        return proc.stdout.strip().split(",")[0] or "docker"
    from harness.toolchain.engines import podman_binary

    proc = subprocess.run([str(podman_binary()), "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "podman"


def run_engine(engine: str, build, scenario: Scenario, out: Path, nonce: str, probe: bool = True) -> EngineResult:
    """Run one engine; never raises HarnessError (an engine that fails is a row with its error)."""
    sentinels = scenario.sentinels(nonce) + run_time_sentinels(engine, nonce)
    result = EngineResult(engine, "", results_dir=str(out))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sentinels.json").write_text(json.dumps([s.to_dict() for s in sentinels], indent=2) + "\n")
    step(f"engine {engine}: {scenario.name}")
    try:
        result.version = engine_version(engine, build)
        with ExitStack() as stack:
            registry = None
            if (scenario.image.delivery == "registry" and engine != "podman") or engine == "docker":
                registry = stack.enter_context(Registry(out))
            if engine == "ctr":
                _engine_ctr(build, scenario, sentinels, out, registry, result)
            elif engine in ("cri", "cri-urunc"):
                _engine_cri(build, scenario, sentinels, out, registry, result, urunc=engine == "cri-urunc",
                            probe=probe and engine == "cri")
            elif engine == "nerdctl":
                _engine_nerdctl(build, scenario, sentinels, out, registry, result, probe=probe)
            elif engine == "podman":
                _engine_podman(build, scenario, sentinels, out, registry, result)
            elif engine == "docker":
                _engine_docker(build, scenario, sentinels, out, registry, result)
            else:
                raise HarnessError(f"unknown engine {engine!r}: use {', '.join(ENGINES)}")
    except HarnessError as exc:
        result.error = str(exc)
    except subprocess.TimeoutExpired as exc:
        result.error = f"timed out: {' '.join(map(str, exc.cmd))[:200]}"
    mapped = stage_map(sentinels, load_documents(out))
    result.sentinels = [m.to_dict() for m in mapped]
    if result.probed and result.error is None:
        from harness.probes.events import write_events

        write_events(out / "events.jsonl", result.events)
        engine_localization(engine, result.events, result.sentinels, build.module)
    return result


def run_engines(engines: list[str], build, scenario: Scenario, out_dir: Path, probe: bool = True) -> list[EngineResult]:
    nonce = secrets.token_hex(3)
    started = time.monotonic()
    results = [run_engine(engine, build, scenario, out_dir / engine, nonce, probe) for engine in engines]
    step(f"engines: {len(results)} in {time.monotonic() - started:.0f}s")
    return results


def _cell(sentinel: dict | None) -> str:
    if sentinel is None:
        return "-"
    if sentinel.get("reached_runtime"):
        return "yes"
    if sentinel["stages"].get("runtime") is None:
        return "?"
    return f"no (last: {sentinel.get('furthest_stage') or 'none'})"


def table(results: list[EngineResult]) -> str:
    """engine x source/key -> reached the runtime, or the last stage that held it."""
    keys: list[tuple[str, str]] = []
    for result in results:
        for s in result.sentinels:
            if (s["source"], s["key"]) not in keys:
                keys.append((s["source"], s["key"]))
    lines = ["| engine | version | " + " | ".join(f"{src}: {key}" for src, key in keys) + " | drop point (delve) |",
             "|---|---|" + "---|" * (len(keys) + 1)]
    for result in results:
        by_key = {(s["source"], s["key"]): s for s in result.sentinels}
        if result.error:
            cells = [f"error: {result.error[:80]}"] + [""] * (len(keys) - 1)
        else:
            cells = [_cell(by_key.get(k)) for k in keys]
        drop = result.drop_point() if result.probed else "not probed"
        lines.append(f"| {result.engine} | {result.version} | " + " | ".join(cells) + f" | {drop} |")
    return "\n".join(lines) + "\n"


__all__ = ["ENGINES", "EngineResult", "run_engine", "run_engines", "table"]
