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


RIGHT = ("restarts", "ms", "p50", "p99")  # the device table's right-justified columns


def device_rows(reports, hosts=None, io=None) -> tuple[list[str], list[list[str]]]:
    """The device table's column names and its rows as plain text (the state a cell of its own:
    :data:`STYLE` colours it)."""
    now = time.time()
    columns = ["device", *(("host",) if hosts else ()), "kind", "state", "address", "worker", "uptime",
               "restarts", "checked", "ms", "p50", "p99", *(("I/O",) if io else ()), "fault / error"]
    rows = []
    for i, r in enumerate(reports):
        rows.append([r.name, *((hosts[i],) if hosts else ()), r.kind, r.state.value,
                     short(r.endpoint), r.worker,
                     duration(r.uptime), str(r.restarts),
                     "" if r.checked is None else f"{now - r.checked:.0f}s ago",
                     ms(r.latency), ms(r.p50), ms(r.p99), *((io_cell(io.get(r.name)),) if io else ()),
                     r.fault or r.error or ""])
    return columns, rows


def device_table(name: str, reports, title: str | None = None, hosts=None, io=None):  # -> rich.table.Table
    """``hosts``: each report's host (a multi-host fleet), shown after the device; ``io``:
    Class 1 figures by device name (``fleet.metrics.io_figures``), an ``I/O`` column."""
    from rich.table import Table

    columns, rows = device_rows(reports, hosts, io)
    state = columns.index("state")
    table = Table(title=title or f"fleet {name}", title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in RIGHT else "left", no_wrap=column == "I/O")
    for row in rows:
        row[state] = f"[{STYLE[row[state]]}]{row[state]}[/]"
        table.add_row(*row)
    return table


def print_device_table(console, name: str, reports, title: str | None = None, hosts=None, io=None) -> None:
    """Print the device table on ``console``: through rich on a terminal (its colours), else
    as the very text rich would print, drawn here (rich measures and renders every cell: 1.4 ms
    a row, 140 s for 100,000 devices), a row a line however wide (rich would wrap the widest
    cells past the console's width; a file or a pipe is read by programs and ``grep``)."""
    if not console.is_terminal and not console.color_system:
        columns, rows = device_rows(reports, hosts, io)
        text = plain_table(title or f"fleet {name}", columns, rows, None)
        if text is not None:
            console.file.write(text)
            return
    console.print(device_table(name, reports, title=title, hosts=hosts, io=io))


def plain_table(title: str, columns: list[str], rows: list[list[str]], width: int | None) -> str | None:
    """rich's default table (``box.HEAVY_HEAD``, a cell of padding each side, the title on the
    left) of these plain-text cells, as rich prints it without colours; None when it would not
    fit ``width`` (None: any) with every cell on one line (rich would wrap or shrink: let it).

    >>> for line in plain_table("t", ["a", "ms"], [["x", "1.5"], ["yy", ""]], 80).splitlines():
    ...     print(line.rstrip())  # the title is padded to the table's width
    t
    ┏━━━━┳━━━━━┓
    ┃ a  ┃  ms ┃
    ┡━━━━╇━━━━━┩
    │ x  │ 1.5 │
    │ yy │     │
    └────┴─────┘
    """
    from rich.cells import cell_len

    cells = [columns, *rows]
    if any("\n" in c or "\r" in c or "\t" in c for row in cells for c in row):
        return None
    plain = all(c.isascii() for row in cells for c in row)
    size = len if plain else cell_len
    widths = [max(map(size, column)) for column in zip(*cells, strict=True)]
    total = sum(widths) + 3 * len(widths) + 1
    if (width is not None and total > width) or size(title) > total:
        return None
    right = [c in RIGHT for c in columns]

    def line(row: list[str], edge: str, sep: str) -> str:
        out = []
        for cell, w, r in zip(row, widths, right, strict=True):
            pad = " " * (w - size(cell))
            out.append(f" {pad}{cell} " if r else f" {cell}{pad} ")
        return edge + sep.join(out) + edge

    bars = lambda fill: [fill * (w + 2) for w in widths]  # noqa: E731
    lines = [title + " " * (total - size(title)),
             "┏" + "┳".join(bars("━")) + "┓", line(columns, "┃", "┃"), "┡" + "╇".join(bars("━")) + "┩",
             *(line(row, "│", "│") for row in rows), "└" + "┴".join(bars("─")) + "┘"]
    return "\n".join(lines) + "\n"


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
