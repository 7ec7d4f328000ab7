"""Where annotrace keeps its caches and results."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Build cache: containerd sources and binaries, delve, helper tools.

    Shared by all runs and tests so one build serves them all. Override with
    ANNOTRACE_CACHE.
    """
    return Path(os.environ.get("ANNOTRACE_CACHE", "/var/cache/annotrace"))


def results_root() -> Path:
    """Per-run results go to <results_root>/<run-id>. Override with ANNOTRACE_RESULTS."""
    return Path(os.environ.get("ANNOTRACE_RESULTS", "results/runs"))


def scenarios_dir() -> Path:
    return PROJECT_ROOT / "scenarios"
