"""Toolchain: resolve a containerd version, build it with debug info, install delve."""

from harness.toolchain.build import Build, build_containerd
from harness.toolchain.resolve import ResolvedVersion, resolve_version

__all__ = ["Build", "ResolvedVersion", "build_containerd", "resolve_version"]
