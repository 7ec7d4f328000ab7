"""Everything that differs between containerd versions, in one table.

containerd moved its packages when it became a v2 module (`images/` ->
`core/images/`, `oci/` -> `pkg/oci/`, the client into `client/`). Code elsewhere
asks this module for names and paths instead of branching on versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

V1_MODULE = "github.com/containerd/containerd"
V2_MODULE = "github.com/containerd/containerd/v2"


def _q(text: str) -> str:
    """A module path as a regex literal."""
    return re.escape(text)


SHIM = "containerd-shim-runc-v2"  # the watched shim process (harness.probes.processes)


@dataclass(frozen=True)
class RpcJoin:
    """A client call in one process and the handler it reaches in the next (an edge of the call graph)."""

    client_process: str
    client: str
    server_process: str
    handler: str
    # The library call that carries the request (its arguments hold the message): a value seen in it,
    # and then received by code of the server process, was sent on even where neither end is probed.
    transport: str = "google.golang.org/grpc.(*ClientConn).Invoke"
    # Which part of the request carries which stage (a field name on the value's path where the server
    # received it): a value sent as a label was not sent as part of the spec.
    carries: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Layout:
    """Source layout of one containerd major version."""

    name: str
    module: str
    commands: dict[str, str]  # binary name -> package to build
    version_pkg: str  # where -X version.Version / version.Revision live
    # Functions on the annotation path, by role (used by the probe plan and reports).
    functions: dict[str, str] = field(default_factory=dict)
    # Default probe plan: per process, regexes matched against the binary's function names.
    probes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The empty plan (--plan empty): only where values enter and leave each process: content reads,
    # the command line, the RPC services and file reads in; RPC requests, file writes and the
    # runtime (runc) out. Nothing about where a value is lost inside.
    entries: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Functions whose call paths build what is sent to the runtime (ranks drop candidates).
    sink_roots: tuple[str, ...] = ()
    # Which processes produce each stage that is derived while a container is made: the first
    # such stage that lost a value says where to search (spec: ctr's option chain and the
    # containers service; bundle: the daemon's runtime v2 code; runtime: the shim).
    stage_processes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per stage, (process, function) pairs under which that stage's document is produced.
    stage_roots: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # Client calls and the handlers they reach in the next process (joined in the call graph).
    rpc_joins: tuple[RpcJoin, ...] = ()


V1_LAYOUT = Layout(
    name="v1",
    module=V1_MODULE,
    commands={
        "ctr": "./cmd/ctr",
        "containerd": "./cmd/containerd",
        "containerd-shim-runc-v2": "./cmd/containerd-shim-runc-v2",
    },
    version_pkg=f"{V1_MODULE}/version",
    functions={
        "images.Config": f"{V1_MODULE}/images.Config",
        "images.Manifest": f"{V1_MODULE}/images.Manifest",
        "client.NewContainer": f"{V1_MODULE}.(*Client).NewContainer",
        "client.WithImageConfigLabels": f"{V1_MODULE}.WithImageConfigLabels",
        "oci.WithImageConfigArgs": f"{V1_MODULE}/oci.WithImageConfigArgs",
        "ctr.NewContainer": f"{V1_MODULE}/cmd/ctr/commands/run.NewContainer",
        "bundle.NewBundle": f"{V1_MODULE}/runtime/v2.NewBundle",
    },
    probes={
        "ctr": (
            rf"^{_q(V1_MODULE)}/cmd/ctr/commands/run\.NewContainer$",
            rf"^{_q(V1_MODULE)}\.\(\*Client\)\.NewContainer$",
            rf"^{_q(V1_MODULE)}\.WithImageConfigLabels\.func1$",
            rf"^{_q(V1_MODULE)}\.WithSpec\.func1$",
            rf"^{_q(V1_MODULE)}\.\(\*image\)\.(Config|Labels)$",
            rf"^{_q(V1_MODULE)}\.\(\*remoteContainers\)\.Create$",
            rf"^{_q(V1_MODULE)}/oci\.(WithImageConfigArgs\.func1|ApplyOpts)$",
            rf"^{_q(V1_MODULE)}/images\.(Config|Manifest|\(\*Image\)\.Config)$",
        ),
        "containerd": (
            rf"^{_q(V1_MODULE)}/services/containers\.\(\*local\)\.Create$",
            rf"^{_q(V1_MODULE)}/metadata\.\(\*containerStore\)\.Create$",
            rf"^{_q(V1_MODULE)}/services/tasks\.\(\*local\)\.Create$",
            rf"^{_q(V1_MODULE)}/runtime/v2\.(\(\*TaskManager\)\.Create|NewBundle)$",
        ),
        SHIM: (
            rf"^{_q(V1_MODULE)}/runtime/v2/runc/task\.\(\*service\)\.Create$",
            rf"^{_q(V1_MODULE)}/runtime/v2/runc\.NewContainer$",
            rf"^{_q(V1_MODULE)}/pkg/process\.\(\*Init\)\.Create$",
        ),
    },
    entries={
        "ctr": (
            rf"^{_q(V1_MODULE)}/content\.ReadBlob$",
            r"^github\.com/urfave/cli\.\(\*Context\)\.StringSlice$",
            r"^google\.golang\.org/grpc\.\(\*ClientConn\)\.Invoke$",
        ),
        "containerd": (
            # The gRPC services' implementations: where a request enters containerd's code, typed.
            rf"^{_q(V1_MODULE)}/services/[\w/]+\.\(\*service\)\.[A-Z]\w*$",
            r"^os\.WriteFile$",
            r"^github\.com/containerd/ttrpc\.\(\*Client\)\.Call$",
        ),
        SHIM: (
            r"^github\.com/containerd/containerd/(api/)?runtime/(v2/)?task(/v[23])?\.Register(TTRPC)?TaskService\.func\d+$",
            r"^os\.(ReadFile|\(\*File\)\.Read|WriteFile)$",
            r"^github\.com/containerd/go-runc\.\(\*Runc\)\.Create$",
        ),
    },
    sink_roots=(f"{V1_MODULE}.(*Client).NewContainer",),
    stage_processes={"container-labels": ("ctr", "containerd"), "spec": ("ctr", "containerd"),
                     "bundle": ("containerd",), "runtime": (SHIM,)},
    stage_roots={
        "container-labels": (("ctr", f"{V1_MODULE}.(*Client).NewContainer"),
                             ("containerd", f"{V1_MODULE}/services/containers.(*local).Create")),
        "spec": (("ctr", f"{V1_MODULE}.(*Client).NewContainer"),
                 ("containerd", f"{V1_MODULE}/services/containers.(*local).Create")),
        "bundle": (("containerd", f"{V1_MODULE}/services/tasks.(*local).Create"),),
        "runtime": ((SHIM, f"{V1_MODULE}/runtime/v2/runc/task.(*service).Create"),),
    },
    rpc_joins=(
        RpcJoin("ctr", f"{V1_MODULE}.(*remoteContainers).Create", "containerd",
                f"{V1_MODULE}/services/containers.(*local).Create",
                carries=(("spec", ".Spec"), ("container-labels", ".Labels"))),
        RpcJoin("containerd", f"{V1_MODULE}/runtime/v2.(*shimTask).Create", SHIM,
                f"{V1_MODULE}/runtime/v2/runc/task.(*service).Create", "github.com/containerd/ttrpc.(*Client).Call"),
    ),
)

V2_LAYOUT = Layout(
    name="v2",
    module=V2_MODULE,
    commands=dict(V1_LAYOUT.commands),
    version_pkg=f"{V2_MODULE}/version",
    functions={
        "images.Config": f"{V2_MODULE}/core/images.Config",
        "images.Manifest": f"{V2_MODULE}/core/images.Manifest",
        "client.NewContainer": f"{V2_MODULE}/client.(*Client).NewContainer",
        "client.WithImageConfigLabels": f"{V2_MODULE}/client.WithImageConfigLabels",
        "oci.WithImageConfigArgs": f"{V2_MODULE}/pkg/oci.WithImageConfigArgs",
        "ctr.NewContainer": f"{V2_MODULE}/cmd/ctr/commands/run.NewContainer",
        "bundle.NewBundle": f"{V2_MODULE}/core/runtime/v2.NewBundle",
    },
    probes={
        "ctr": (
            rf"^{_q(V2_MODULE)}/cmd/ctr/commands/run\.NewContainer$",
            rf"^{_q(V2_MODULE)}/client\.\(\*Client\)\.NewContainer$",
            rf"^{_q(V2_MODULE)}/client\.WithImageConfigLabels\.func1$",
            rf"^{_q(V2_MODULE)}/client\.WithSpec\.func1$",
            rf"^{_q(V2_MODULE)}/client\.\(\*image\)\.(Config|Labels)$",
            rf"^{_q(V2_MODULE)}/client\.\(\*remoteContainers\)\.Create$",
            rf"^{_q(V2_MODULE)}/pkg/oci\.(WithImageConfigArgs\.func1|ApplyOpts)$",
            rf"^{_q(V2_MODULE)}/core/images\.(Config|Manifest|\(\*Image\)\.Config)$",
        ),
        "containerd": (
            rf"^{_q(V2_MODULE)}/plugins/services/containers\.\(\*local\)\.Create$",
            rf"^{_q(V2_MODULE)}/core/metadata\.\(\*containerStore\)\.Create$",
            rf"^{_q(V2_MODULE)}/plugins/services/tasks\.\(\*local\)\.Create$",
            rf"^{_q(V2_MODULE)}/core/runtime/v2\.(\(\*TaskManager\)\.Create|NewBundle)$",
        ),
        SHIM: (
            rf"^{_q(V2_MODULE)}/cmd/containerd-shim-runc-v2/task\.\(\*service\)\.Create$",
            rf"^{_q(V2_MODULE)}/cmd/containerd-shim-runc-v2/runc\.NewContainer$",
            rf"^{_q(V2_MODULE)}/cmd/containerd-shim-runc-v2/process\.\(\*Init\)\.Create$",
        ),
    },
    entries={
        "ctr": (
            rf"^{_q(V2_MODULE)}/core/content\.ReadBlob$",
            r"^github\.com/urfave/cli/v2\.\(\*Context\)\.StringSlice$",
            r"^google\.golang\.org/grpc\.\(\*ClientConn\)\.Invoke$",
        ),
        "containerd": (
            # The gRPC services' implementations: where a request enters containerd's code, typed.
            rf"^{_q(V2_MODULE)}/plugins/services/[\w/]+\.\(\*service\)\.[A-Z]\w*$",
            r"^os\.WriteFile$",
            r"^github\.com/containerd/ttrpc\.\(\*Client\)\.Call$",
        ),
        SHIM: (
            r"^github\.com/containerd/containerd/api/runtime/task/v[23]\.RegisterTTRPCTaskService\.func\d+$",
            r"^os\.(ReadFile|\(\*File\)\.Read|WriteFile)$",
            r"^github\.com/containerd/go-runc\.\(\*Runc\)\.Create$",
        ),
    },
    sink_roots=(f"{V2_MODULE}/client.(*Client).NewContainer",),
    stage_processes=dict(V1_LAYOUT.stage_processes),
    stage_roots={
        "container-labels": (("ctr", f"{V2_MODULE}/client.(*Client).NewContainer"),
                             ("containerd", f"{V2_MODULE}/plugins/services/containers.(*local).Create")),
        "spec": (("ctr", f"{V2_MODULE}/client.(*Client).NewContainer"),
                 ("containerd", f"{V2_MODULE}/plugins/services/containers.(*local).Create")),
        "bundle": (("containerd", f"{V2_MODULE}/plugins/services/tasks.(*local).Create"),),
        "runtime": ((SHIM, f"{V2_MODULE}/cmd/containerd-shim-runc-v2/task.(*service).Create"),),
    },
    rpc_joins=(
        RpcJoin("ctr", f"{V2_MODULE}/client.(*remoteContainers).Create", "containerd",
                f"{V2_MODULE}/plugins/services/containers.(*local).Create",
                carries=(("spec", ".Spec"), ("container-labels", ".Labels"))),
        RpcJoin("containerd", f"{V2_MODULE}/core/runtime/v2.(*shimTask).Create", SHIM,
                f"{V2_MODULE}/cmd/containerd-shim-runc-v2/task.(*service).Create",
                "github.com/containerd/ttrpc.(*Client).Call"),
    ),
)


@dataclass(frozen=True)
class ReleaseLine:
    """A minor release line and what it needs to build."""

    prefix: str  # "v1.7"
    layout: Layout
    # Go toolchain to fall back to when the installed Go cannot build this line.
    # The go command fetches it from the module proxy (golang.org/toolchain).
    fallback_go: str
    # Go build tags this line needs here. v1.6's btrfs snapshotter is cgo and wants
    # libbtrfs headers; the harness never uses btrfs, so it is compiled out.
    build_tags: tuple[str, ...] = ()


RELEASE_LINES: tuple[ReleaseLine, ...] = (
    ReleaseLine("v1.6", V1_LAYOUT, "go1.22.12", build_tags=("no_btrfs",)),
    ReleaseLine("v1.7", V1_LAYOUT, "go1.23.12"),
    ReleaseLine("v2.0", V2_LAYOUT, "go1.24.13"),
    ReleaseLine("v2.1", V2_LAYOUT, "go1.24.13"),
    ReleaseLine("v2.2", V2_LAYOUT, "go1.25.8"),
    ReleaseLine("v2.3", V2_LAYOUT, "go1.26.0"),
)

# The containerd the default scenarios pin. A v2 tag that builds with the Go here.
DEFAULT_VERSION = "v2.1.4"

_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?$")


def build_tags(version: str) -> tuple[str, ...]:
    line = release_line(version)
    return line.build_tags if line else ()


def layout_for_module(module: str) -> Layout:
    return V2_LAYOUT if module == V2_MODULE else V1_LAYOUT


def layout_for_version(version: str) -> Layout:
    """Layout of an exact version (tag or pseudo-version)."""
    match = _SEMVER.match(version)
    if match and int(match.group(1)) >= 2:
        return V2_LAYOUT
    return V1_LAYOUT


def release_line(version: str) -> ReleaseLine | None:
    match = _SEMVER.match(version)
    if not match:
        return None
    prefix = f"v{match.group(1)}.{match.group(2)}"
    for line in RELEASE_LINES:
        if line.prefix == prefix:
            return line
    return None


# Where v1 packages live in the v2 module (relative to the module root). Names and
# files are compared across versions in this v2 form ("core/images.Config"), so a
# verdict recorded on v1.7 and one recorded on v2.1 can be told equal or not.
V1_TO_V2_PACKAGES: dict[str, str] = {
    "": "client",  # the v1 client lived in the module root
    "images": "core/images",
    "containers": "core/containers",
    "content": "core/content",
    "diff": "core/diff",
    "events": "core/events",
    "leases": "core/leases",
    "metadata": "core/metadata",
    "mount": "core/mount",
    "snapshots": "core/snapshots",
    "runtime/v2": "core/runtime/v2",
    "oci": "pkg/oci",
    "services/containers": "plugins/services/containers",
    "services/tasks": "plugins/services/tasks",
    "services/images": "plugins/services/images",
    "services/content": "plugins/services/content",
}

def _moved(package: str) -> str:
    """The v2 home of a v1 package path (relative to the module), longest prefix first."""
    for old in sorted(V1_TO_V2_PACKAGES, key=len, reverse=True):
        if old and (package == old or package.startswith(old + "/")):
            return V1_TO_V2_PACKAGES[old] + package[len(old):]
    return V1_TO_V2_PACKAGES[""] if package == "" else package


def canonical_function(name: str) -> str:
    """A containerd function name, module-relative and in v2 layout; other names unchanged.

    github.com/containerd/containerd/images.Config     -> core/images.Config
    github.com/containerd/containerd.(*Client).NewContainer -> client.(*Client).NewContainer
    github.com/containerd/containerd/v2/core/images.Config  -> core/images.Config
    """
    if name.startswith(V2_MODULE + "/"):
        return name[len(V2_MODULE) + 1:]
    if name.startswith(V1_MODULE + "."):
        return f"{V1_TO_V2_PACKAGES['']}.{name[len(V1_MODULE) + 1:]}"
    if name.startswith(V1_MODULE + "/") and not name.startswith(V2_MODULE + "/"):
        relative = name[len(V1_MODULE) + 1:]
        package, dot, rest = _split_symbol(relative)
        return f"{_moved(package)}{dot}{rest}"
    return name


def _split_symbol(relative: str) -> tuple[str, str, str]:
    """Split "runtime/v2.(*TaskManager).Create" into ("runtime/v2", ".", "(*TaskManager).Create")."""
    slash = relative.rfind("/")
    dot = relative.find(".", slash + 1)
    if dot < 0:
        return relative, "", ""
    return relative[:dot], ".", relative[dot + 1:]


def canonical_file(path: str | None, module: str) -> str | None:
    """A source file relative to the module root, in v2 layout (images/image.go -> core/images/image.go)."""
    if not path or module != V1_MODULE:
        return path
    directory, _, base = path.rpartition("/")
    return f"{_moved(directory)}/{base}" if directory else f"{V1_TO_V2_PACKAGES['']}/{base}"
