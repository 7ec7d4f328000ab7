"""Human output goes to stderr so stdout stays free for the --json document."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console

err = Console(stderr=True, highlight=False)
if not err.is_terminal:
    # Logs and CI: do not squeeze tables into 80 columns.
    err = Console(stderr=True, highlight=False, width=200)


def step(message: str) -> None:
    """One line of progress for long work."""
    err.print(f"[bold cyan]>[/] {message}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner while something slow runs; falls back to one line when not a terminal."""
    if err.is_terminal:
        with err.status(message):
            yield
    else:
        step(message)
        yield
