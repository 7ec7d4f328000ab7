"""Sandbox: an isolated containerd daemon, a recorder runtime, an optional local registry."""

from harness.sandbox.daemon import Sandbox
from harness.sandbox.registry import Registry

__all__ = ["Registry", "Sandbox"]
