"""Resolve what a user names (tag, release line, latest, main, commit) to one module version.

Everything goes through the go command and the module proxy, the only place
containerd's source comes from.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass

from harness.errors import HarnessError
from harness.toolchain.gocmd import go_json, go_query, last_line
from harness.versions import V1_MODULE, V2_MODULE, layout_for_module

_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$")
_LINE = re.compile(r"^v(\d+)\.(\d+)$")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
# vX.0.0-yyyymmddhhmmss-hash, vX.Y.(Z+1)-0.yyyymmddhhmmss-hash, vX.Y.Z-pre.0.yyyymmddhhmmss-hash
_PSEUDO_HASH = re.compile(r"[-.]\d{14}-([0-9a-f]{12})$")

HINT = "name a tag (v2.1.4), a release line (v1.7), latest, main or a commit hash"


@dataclass(frozen=True)
class ResolvedVersion:
    requested: str
    module: str
    version: str  # exact module version: a tag or a pseudo-version
    time: str  # commit time reported by the module proxy
    commit: str  # commit hash prefix when known (pseudo-versions carry 12 hex digits)

    @property
    def layout(self):
        return layout_for_module(self.module)

    def to_dict(self) -> dict:
        return asdict(self)


def _module_for_major(major: int) -> str:
    return V2_MODULE if major >= 2 else V1_MODULE


def _info(module: str, query: str) -> dict | None:
    return _info_or_reason(module, query)[0]


def _info_or_reason(module: str, query: str) -> tuple[dict | None, str]:
    """`go list -m -json module@query`, or None and the go command's complaint."""
    try:
        return go_json(["list", "-m", "-json", f"{module}@{query}"]), ""
    except subprocess.CalledProcessError as exc:
        return None, exc.stderr or ""


def _refused(reason: str) -> bool:
    """The proxy refused to look the query up (it serves only what it has cached), as opposed to not finding it."""
    return "403" in reason or "not available" in reason


def _versions(module: str) -> list[str]:
    proc = go_query(["list", "-m", "-versions", module])
    if proc.returncode != 0:
        raise HarnessError(f"cannot list versions of {module} from the module proxy: {last_line(proc.stderr)}")
    return proc.stdout.split()[1:]


def _semver_key(tag: str) -> tuple[int, int, int]:
    match = _TAG.match(tag)
    assert match
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def newest_in_line(tags: list[str], line: str) -> str | None:
    """Newest release (no pre-release suffix) of a line such as v1.7."""
    releases = [t for t in tags if t.startswith(line + ".") and _TAG.match(t) and not _TAG.match(t).group(4)]
    return max(releases, key=_semver_key) if releases else None


def _resolved(requested: str, module: str, info: dict) -> ResolvedVersion:
    version = info["Version"]
    match = _PSEUDO_HASH.search(version)
    commit = match.group(1) if match else ""
    return ResolvedVersion(requested, module, version, info.get("Time", ""), commit)


def resolve_version(requested: str) -> ResolvedVersion:
    """Resolve a user's version request or raise HarnessError with what to do."""
    requested = requested.strip()
    if match := _TAG.match(requested):
        module = _module_for_major(int(match.group(1)))
        info = _info(module, requested)
        if info is None:
            raise HarnessError(f"unknown containerd version {requested!r}: the module proxy has no such tag of {module}; {HINT}")
        return _resolved(requested, module, info)
    if match := _LINE.match(requested):
        module = _module_for_major(int(match.group(1)))
        newest = newest_in_line(_versions(module), requested)
        if newest is None:
            raise HarnessError(f"unknown containerd release line {requested!r}: no release of {module} starts with {requested}.; {HINT}")
        return _resolved(requested, module, _info(module, newest) or {"Version": newest})
    if requested in ("latest", "main") or _COMMIT.match(requested):
        # A commit from before the v2 module exists only under the v1 path.
        for module in (V2_MODULE, V1_MODULE):
            info = _info(module, requested)
            if info is not None:
                resolved = _resolved(requested, module, info)
                if _COMMIT.match(requested) and not resolved.commit:
                    resolved = ResolvedVersion(requested, module, resolved.version, resolved.time, requested[:12])
                return resolved
        if requested == "main" and _refused(_info_or_reason(V2_MODULE, "main")[1]):
            raise HarnessError("containerd 'main' is not available: the module proxy refuses @main here (it serves "
                               "only versions it has cached); name a tag, a release line or latest instead")
        raise HarnessError(f"unknown containerd version {requested!r}: the module proxy resolves it under neither {V2_MODULE} nor {V1_MODULE}; {HINT}")
    raise HarnessError(f"cannot read containerd version {requested!r}: {HINT}")
