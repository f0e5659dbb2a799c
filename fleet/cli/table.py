"""The per-device table that ``status`` prints and ``status --watch`` refreshes."""

from __future__ import annotations

import time


def ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def short(endpoint: str) -> str:
    """An address as the table shows it: a path (a serial line's link) relative to the current
    folder when it is under it, as a user would type it."""
    import os

    here = os.getcwd().rstrip("/") + "/"
    return endpoint[len(here):] if endpoint.startswith(here) else endpoint


STYLE = {"healthy": "green", "down": "red", "failed": "red", "restarting": "yellow",
         "starting": "yellow", "stopped": "dim", "unknown": "magenta", "faulted": "bright_magenta"}


def device_table(name: str, reports, title: str | None = None):  # -> rich.table.Table
    from rich.table import Table

    now = time.time()
    table = Table(title=title or f"fleet {name}", title_justify="left")
    for column in ("device", "kind", "state", "address", "worker", "uptime", "restarts", "checked",
                   "ms", "p50", "p99", "fault / error"):
        table.add_column(column, justify="right" if column in ("restarts", "ms", "p50", "p99") else "left")
    for r in reports:
        state = r.state.value
        table.add_row(r.name, r.kind, f"[{STYLE[state]}]{state}[/]", short(r.endpoint), r.worker,
                      duration(r.uptime), str(r.restarts),
                      "" if r.checked is None else f"{now - r.checked:.0f}s ago",
                      ms(r.latency), ms(r.p50), ms(r.p99), r.fault or r.error or "")
    return table
