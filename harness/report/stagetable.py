"""The stage map as a rich table for people, and as plain text for the results dir."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.image.scenario import STAGES

_MARK = {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]?[/]"}


def stage_table(document: dict) -> Table:
    containerd = document["containerd"]
    table = Table(title=f"{document['scenario']} on containerd {containerd['version']}: where each sentinel was seen",
                  title_justify="left")
    table.add_column("source")
    table.add_column("key")
    for stage in STAGES:
        table.add_column(stage, justify="center")
    table.add_column("runtime gets it", justify="center")
    for sentinel in document["sentinels"]:
        table.add_row(
            sentinel["source"],
            sentinel["key"],
            *(_MARK[sentinel["stages"][stage]] for stage in STAGES),
            "[bold green]YES[/]" if sentinel["reached_runtime"] else "[bold red]NO[/]",
        )
    return table


def render_plain(document: dict) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(stage_table(document))
    return console.export_text()
