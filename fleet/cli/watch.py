"""``cpppo-fleet status --watch``: a rich ``Live`` table refreshed in place, worst devices first
(failed, down, restarting, unknown, starting, stopped, then healthy; slowest first within a
state), under a summary: healthy/total, p50 and p99 of the devices' last latencies, and worker
restarts in the last minute.  As many rows as the terminal holds; the summary counts all."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fleet.store import percentile

SEVERITY = {"failed": 0, "down": 1, "restarting": 2, "unknown": 3, "faulted": 4, "starting": 5, "stopped": 6,
            "healthy": 7}


def worst_first(reports: Sequence[Any]) -> list[Any]:
    return sorted(reports, key=lambda r: (SEVERITY.get(r.state.value, 9), -(r.latency or 0.0), r.name))


def recent_restarts(starts: Mapping[str, list[tuple[int, float]]], now: float, within: float = 60.0) -> int:
    """Worker starts in the last ``within`` seconds, not counting each worker's first start.

    >>> recent_restarts({"w0": [(1, 0.0), (2, 95.0)], "w1": [(3, 90.0)]}, 100.0)
    1
    """
    return sum(1 for runs in starts.values() for _pid, when in runs[1:] if now - when <= within)


def header(name: str, reports: Sequence[Any], starts: Mapping[str, list], now: float) -> str:
    healthy = sum(1 for r in reports if r.state.value == "healthy")
    latencies = [r.latency for r in reports if r.latency is not None]
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f} ms"

    return (f"fleet {name}: {healthy}/{len(reports)} healthy · p50 {ms(p50)} · p99 {ms(p99)} · "
            f"{recent_restarts(starts, now)} restarts in the last minute · {time.strftime('%H:%M:%S')}")


def watch(plan: Any, collect: Callable[[], tuple[Any, list, Mapping]], interval: float, count: int) -> None:
    """Refresh until Ctrl-C (or ``count`` refreshes)."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from fleet.cli.table import device_table

    console = Console(width=None if sys.stdout.isatty() else 160)

    def render() -> Group:
        _programs, reports, starts = collect()
        rows = max(3, console.height - 8)
        shown = worst_first(reports)[:rows]
        title = header(plan.fleet.name, reports, starts, time.time())
        more = len(reports) - len(shown)
        table = device_table(plan.fleet.name, shown, title=title)
        return Group(table, Text(f"... and {more} more" if more > 0 else ""))

    refreshes = 0
    try:
        with Live(render(), console=console, auto_refresh=False, transient=False) as live:
            refreshes = 1
            while count == 0 or refreshes < count:
                time.sleep(interval)
                live.update(render(), refresh=True)
                refreshes += 1
    except KeyboardInterrupt:
        pass
