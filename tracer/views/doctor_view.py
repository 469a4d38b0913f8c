"""`mcalltrace doctor` as text."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracer.doctor import Check


def checks_renderable(checks: list[Check]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column()
    for check in checks:
        status = Text("ok", style="green") if check.ok else Text("FAIL", style="bold red")
        detail = check.detail if check.ok else f"{check.detail}\nfix: {check.fix}"
        table.add_row(status, check.name, detail)
    return table


def render_checks(checks: list[Check], console: Console | None = None) -> None:
    (console or Console()).print(checks_renderable(checks))
