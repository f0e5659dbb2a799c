"""``cpppo-fleet status`` (per-device table from the health store) and ``poll`` (one sweep now)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from fleet.cli.common import EXIT_FAILED, FLEET_FILE, STATE_DIR, backend_for, command_hint, fail

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status(path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR, as_json: bool = JSON,
           faults_ok: bool = typer.Option(False, "--faults-ok",
                                          help="Injected faults do not count: exit 0 when every device "
                                               "is healthy or faulted on purpose.")) -> None:
    """Per device: state, IP:port, worker, uptime, restarts, last health result and latency
    (last, p50, p99), injected fault; exit 0 only when every device is healthy."""
    from fleet.control import control_dir
    from fleet.faults import active
    from fleet.report import device_reports, summary
    from fleet.states import DeviceState
    from fleet.store import Store, StoreError

    plan, backend = backend_for(path, state_dir)
    programs = backend.status()
    if not programs and not as_json:
        fail(f"fleet {plan.fleet.name!r} is not up (0 healthy / {len(plan.devices)} total); "
             f"bring it up with: cpppo-fleet up {command_hint(path, state_dir)}")
    applied = backend.applied_plan() if programs else None
    history, starts, unserved = {}, {}, {}
    if programs and backend.state.database.exists():
        try:
            with Store(backend.state.database) as store:
                history, starts, unserved = store.history(), store.starts(), store.serve_errors()
        except StoreError as exc:
            typer.echo(f"cpppo-fleet: {exc} (no health results to show; the health poller starts "
                       "a new database)", err=True)
    injected = active(control_dir(backend.state.root)) if programs else {}
    reports = device_reports(plan, applied, programs, history, starts, serve_errors=unserved, faults=injected)
    line = summary(reports)
    if as_json:
        typer.echo(json.dumps({
            "fleet": plan.fleet.name, "summary": line, "up": bool(programs),
            "healthy": sum(r.state is DeviceState.HEALTHY for r in reports), "total": len(reports),
            "programs": {n: {"state": p.state.value, "pid": p.pid, "started": p.started}
                         for n, p in programs.items()},
            "devices": [r.to_json() for r in reports],
            "faults": {name: {**f.to_dict(), "describe": f.describe()}
                       for name, f in sorted(injected.items())},
        }, indent=1))
    else:
        _table(plan.fleet.name, reports, line)
    fine = {DeviceState.HEALTHY, DeviceState.FAULTED} if faults_ok else {DeviceState.HEALTHY}
    if not all(r.state in fine for r in reports):
        raise typer.Exit(EXIT_FAILED)


_STYLE = {"healthy": "green", "down": "red", "failed": "red", "restarting": "yellow",
          "starting": "yellow", "stopped": "dim", "unknown": "magenta", "faulted": "bright_magenta"}


def _table(name: str, reports, line: str) -> None:
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    table = Table(title=f"fleet {name}", title_justify="left")
    for column in ("device", "kind", "state", "address", "worker", "uptime", "restarts", "checked",
                   "ms", "p50", "p99", "fault / error"):
        table.add_column(column, justify="right" if column in ("restarts", "ms", "p50", "p99") else "left")
    for r in reports:
        state = r.state.value
        table.add_row(r.name, r.kind, f"[{_STYLE[state]}]{state}[/]", r.endpoint, r.worker,
                      _duration(r.uptime), str(r.restarts),
                      "" if r.checked is None else f"{now - r.checked:.0f}s ago",
                      _ms(r.latency), _ms(r.p50), _ms(r.p99), r.fault or r.error or "")
    console = Console(width=max(140, Console().width))
    console.print(table)
    console.print(line, markup=False, highlight=False)


def poll(path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR, as_json: bool = JSON) -> None:
    """Poll every device that is up once, now; print and store the results."""
    from fleet.health import run_sweep
    from fleet.store import StoreError, open_store

    plan, backend = backend_for(path, state_dir)
    devices = (backend.applied_plan() or plan).devices
    begun = time.monotonic()
    results = run_sweep(devices, plan.fleet.health_timeout, plan.fleet.health_concurrency)
    elapsed = time.monotonic() - begun
    if backend.state.root.exists():
        try:
            with open_store(backend.state.database) as store:
                store.record(results, plan.fleet.health_retention)
        except StoreError as exc:
            typer.echo(f"cpppo-fleet: {exc} (results not stored)", err=True)
    ok = sum(r.ok for r in results)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "total": len(results), "seconds": elapsed,
                               "results": [{"device": r.device, "ok": r.ok, "latency": r.latency,
                                            "error": r.error} for r in results]}, indent=1))
    else:
        width = max(len(r.device) for r in results)
        for r in results:
            outcome = f"ok {_ms(r.latency)} ms" if r.ok else f"FAIL {r.error}"
            typer.echo(f"{r.device:<{width}}  {outcome}")
        typer.echo(f"{ok} healthy / {len(results)} polled in {elapsed:.2f} s")
    if ok != len(results):
        raise typer.Exit(EXIT_FAILED)
