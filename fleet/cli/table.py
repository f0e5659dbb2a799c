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


def io_cell(figures: dict | None) -> str:
    """A Class 1 adapter's figures in a cell: scanners connected, packets/s (both ways, the
    last 5 s), late and missing O->T packets since start.

    >>> io_cell({"connections": 2, "packets_per_second_in": 99.5, "packets_per_second_out": 100,
    ...          "late": 3, "missing": 0})
    '2 conn 200/s 3 late 0 miss'
    """
    if not figures:
        return ""
    rate = figures.get("packets_per_second_in", 0) + figures.get("packets_per_second_out", 0)
    return (f"{figures.get('connections', 0)} conn {rate:.0f}/s {figures.get('late', 0)} late "
            f"{figures.get('missing', 0)} miss")


def device_table(name: str, reports, title: str | None = None, hosts=None, io=None):  # -> rich.table.Table
    """``hosts``: each report's host (a multi-host fleet), shown after the device; ``io``:
    Class 1 figures by device name (``fleet.metrics.io_figures``), an ``I/O`` column."""
    from rich.table import Table

    now = time.time()
    table = Table(title=title or f"fleet {name}", title_justify="left")
    for column in ("device", *(("host",) if hosts else ()), "kind", "state", "address", "worker", "uptime",
                   "restarts", "checked", "ms", "p50", "p99", *(("I/O",) if io else ()), "fault / error"):
        table.add_column(column, justify="right" if column in ("restarts", "ms", "p50", "p99") else "left",
                         no_wrap=column == "I/O")
    for i, r in enumerate(reports):
        state = r.state.value
        table.add_row(r.name, *((hosts[i],) if hosts else ()), r.kind, f"[{STYLE[state]}]{state}[/]",
                      short(r.endpoint), r.worker,
                      duration(r.uptime), str(r.restarts),
                      "" if r.checked is None else f"{now - r.checked:.0f}s ago",
                      ms(r.latency), ms(r.p50), ms(r.p99), *((io_cell(io.get(r.name)),) if io else ()),
                      r.fault or r.error or "")
    return table


SUMMARY_ABOVE = 100  # `status` prints a row per device up to this many; past it, a summary
SUMMARY_BY = ("kind", "worker")  # the report columns the summary counts states by, in order
LISTED = 50  # not-healthy devices the summary lists (`--state down` lists them all)
SUMMARY_ROWS = 20  # a summary table with more values than this shows only those not all healthy


def summary_tables(name: str, reports, by=SUMMARY_BY) -> list:  # -> [rich.table.Table]
    """One table per column of ``by``: a row per value of it (``enip``, ``w007``, ...), the count
    of devices in each state.  A column of many values (workers) shows only the rows with a
    device not healthy, and the rest as one row."""
    from rich.table import Table

    from fleet.states import DeviceState

    order = [s.value for s in DeviceState]
    present = sorted({r.state.value for r in reports}, key=order.index)
    tables = []
    for column in by:
        counts: dict[str, dict[str, int]] = {}
        for r in reports:
            row = counts.setdefault(r.column(column), {})
            row[r.state.value] = row.get(r.state.value, 0) + 1
        shown = counts
        if len(counts) > SUMMARY_ROWS:
            shown = {value: row for value, row in counts.items() if set(row) != {"healthy"}}
        table = Table(title=f"fleet {name}: by {column}", title_justify="left")
        table.add_column(column)
        table.add_column("devices", justify="right")
        for state in present:
            table.add_column(f"[{STYLE[state]}]{state}[/]", justify="right")
        for value, row in sorted(shown.items()):
            table.add_row(value, str(sum(row.values())), *(str(row.get(s, "")) for s in present))
        rest = len(counts) - len(shown)
        if rest:
            table.add_row(f"({rest} more, all healthy)", str(sum(sum(counts[v].values()) for v in counts
                                                                  if v not in shown)),
                          *("" for _ in present))
        tables.append(table)
    return tables
