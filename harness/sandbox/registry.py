"""A local OCI registry on 127.0.0.1 (Debian's docker-registry), and a minimal push client.

The seed investigation pulled its image from localhost:5000; this reproduces that
delivery without touching the network: the harness starts the registry on a
loopback port, pushes the layout it wrote, and containerd pulls it with --plain-http.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.console import step
from harness.errors import HarnessError, ToolMissing
from harness.image.layout import MEDIA_INDEX, ImageLayout

READY_TIMEOUT = 30.0
REGISTRY_BINARIES = ("docker-registry", "registry")

_CONFIG = """version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Registry:
    """`with Registry(log_dir) as registry:` serves on registry.host (127.0.0.1:PORT)."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.log_dir = log_dir
        self.port = port
        self.workdir: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Registry:
        binary = next((shutil.which(b) for b in REGISTRY_BINARIES if shutil.which(b)), None)
        if binary is None:
            raise ToolMissing("docker-registry", "install Debian's docker-registry package (scripts/setup.sh does)")
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise HarnessError(f"port 127.0.0.1:{self.port} is busy: free it or pick another with --registry-port")
        self.workdir = Path(tempfile.mkdtemp(prefix="annotrace-registry-", dir="/var/tmp"))
        config = self.workdir / "config.yml"
        config.write_text(_CONFIG.format(root=self.workdir / "storage", port=self.port))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / "registry.log").open("ab")
        step(f"starting a local registry on {self.host}")
        self.process = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=log, start_new_session=True)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = (self.log_dir / "registry.log").read_text(errors="replace").strip().splitlines()[-1:]
                if any("address already in use" in line for line in tail):
                    raise HarnessError(f"port {self.host} is busy: free it or pick another with --registry-port")
                raise HarnessError(f"the registry exited during start-up ({tail}); see {self.log_dir / 'registry.log'}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise HarnessError(f"the registry did not answer on {self.host} within {READY_TIMEOUT:.0f}s")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # A minimal OCI distribution push: blobs by monolithic upload, then manifests.
    def _request(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:300]
            raise HarnessError(f"registry {method} {url} answered {exc.code}: {body}") from exc

    def _push_blob(self, repository: str, layout: ImageLayout, digest: str) -> None:
        base = f"http://{self.host}/v2/{repository}"
        if self._has_blob(base, digest):
            return
        upload = self._request("POST", f"{base}/blobs/uploads/")
        location = upload.headers["Location"]
        if location.startswith("/"):
            location = f"http://{self.host}{location}"
        separator = "&" if "?" in location else "?"
        data = layout.blob_path(digest).read_bytes()
        self._request("PUT", f"{location}{separator}digest={digest}", data,
                      {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}).close()

    def _has_blob(self, base: str, digest: str) -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{base}/blobs/{digest}", method="HEAD"), timeout=10):
                return True
        except urllib.error.HTTPError:
            return False

    def _put_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> None:
        url = f"http://{self.host}/v2/{repository}/manifests/{reference}"
        self._request("PUT", url, data, {"Content-Type": media_type}).close()

    def push(self, layout: ImageLayout, repository: str, tag: str) -> str:
        """Push the layout's image index under `tag`; returns the pullable reference."""
        step(f"pushing {repository}:{tag} to {self.host}")
        for layer in layout.layers:
            self._push_blob(repository, layout, layer.digest)
        for platform_name, manifest in layout.manifests.items():
            self._push_blob(repository, layout, layout.configs[platform_name].digest)
            self._put_manifest(repository, manifest.digest, manifest.media_type,
                               layout.blob_path(manifest.digest).read_bytes())
        self._put_manifest(repository, tag, MEDIA_INDEX, layout.blob_path(layout.index.digest).read_bytes())
        return f"{self.host}/{repository}:{tag}"

    def manifest(self, repository: str, reference: str, media_type: str = MEDIA_INDEX) -> dict:
        """What the registry serves for a reference (used by tests)."""
        request = urllib.request.Request(f"http://{self.host}/v2/{repository}/manifests/{reference}",
                                         headers={"Accept": media_type})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
