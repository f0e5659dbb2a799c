"""``cpppo-fleet status`` (per-device table from the health store; ``--watch``: live) and
``poll`` (one sweep now)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from fleet.bulk import no_collections
from fleet.cli import multihost
from fleet.cli.common import EXIT_FAILED, FLEET_FILE, STATE_DIR, backend_for, command_hint, fail
from fleet.cli.table import LISTED, SUMMARY_ABOVE, ms, print_device_table, summary_tables
from fleet.hosts import is_multihost

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
WATCH = typer.Option(False, "--watch", "-w", help="Refresh a live table in place (Ctrl-C ends it), "
                                                  "worst devices first.")
INTERVAL = typer.Option(1.0, "--interval", min=0.1, help="Seconds between --watch refreshes.")
COUNT = typer.Option(0, "--count", min=0, help="Stop --watch after this many refreshes (0: never).")
ALL = typer.Option(False, "--all", "-a", help=f"A row for every device, however many (past {SUMMARY_ABOVE} "
                                              "devices, status prints a summary instead).")
ONLY = typer.Option(None, "--only", metavar="PATTERN",
                    help="Rows for the devices matching this glob (or a worker's name); repeatable.")
STATES = typer.Option(None, "--state", metavar="STATE",
                      help="Rows for the devices in this state (healthy, down, faulted, ...); repeatable.")


def _collect(plan, backend, quiet: bool = False):  # -> (programs, reports, starts, faults, orphans)
    from fleet.control import control_dir
    from fleet.faults import active
    from fleet.report import device_reports
    from fleet.store import Store, StoreError

    programs = backend.status()
    orphans = {} if programs else backend.orphans()  # its supervisor died; they still run
    applied = backend.applied_plan() if programs or orphans else None
    history, starts, unserved = {}, {}, {}
    if orphans:  # no supervised poller to trust: ask the devices themselves, now
        programs = orphans
        history = _check_now(applied or plan, orphans, control_dir(backend.state.root))
    elif programs and backend.state.database.exists():
        try:
            with Store(backend.state.database) as store:
                history = store.history(latencies=False)
                starts, unserved = store.starts(), store.serve_errors()
        except StoreError as exc:
            if not quiet:
                typer.echo(f"cpppo-fleet: {exc} (no health results to show; the health poller starts "
                           "a new database)", err=True)
    injected = active(control_dir(backend.state.root)) if programs else {}
    reports = device_reports(plan, applied, programs, history, starts, serve_errors=unserved, faults=injected)
    return programs, reports, starts, injected, orphans


def status(path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR, as_json: bool = JSON,
           faults_ok: bool = typer.Option(False, "--faults-ok",
                                          help="Injected faults do not count: exit 0 when every device "
                                               "is healthy or faulted on purpose."),
           watch: bool = WATCH, interval: float = INTERVAL, count: int = COUNT,
           show_all: bool = ALL, only: list[str] | None = ONLY, states: list[str] | None = STATES) -> None:
    """Per device: state, IP:port, worker, uptime, restarts, last health result and latency
    (last, p50, p99), injected fault; exit 0 only when every device is healthy.  Past
    100 devices: counts by state, kind and worker, and the devices not healthy
    (``--all``, ``--only``, ``--state`` ask for rows).  ``--watch``: a live table, worst first."""
    if is_multihost(path):
        multihost.refuse("--watch", watch)
        multihost.refuse("--state-dir", state_dir)
        return multihost.status(path, as_json, faults_ok)
    wanted = _check_states(states)
    if watch:
        from fleet.cli.watch import watch as live

        plan, backend = backend_for(path, state_dir)
        live(plan, lambda: _collect(plan, backend, quiet=True)[:3], interval, count)
        return
    # one look: what it reads (a million objects at 100,000 devices) lives until the process
    # ends, so no collections scan it, nor the one at exit (fleet.bulk)
    with no_collections(freeze=True):
        _look(path, state_dir, as_json, faults_ok, show_all, only, wanted)


def _look(path: Path, state_dir: Path | None, as_json: bool, faults_ok: bool, show_all: bool,
          only: list[str] | None, wanted: set) -> None:
    from fleet.report import summary
    from fleet.states import DeviceState
    from fleet.web.serve import read_web

    plan, backend = backend_for(path, state_dir)
    programs, reports, _starts, injected, orphans = _collect(plan, backend)
    if not programs and not as_json:
        fail(f"fleet {plan.fleet.name!r} is not up (0 healthy / {len(plan.devices)} total); "
             f"bring it up with: cpppo-fleet up {command_hint(path, state_dir)}")
    line = summary(reports)
    notice = ""
    if orphans:
        hint = command_hint(path, state_dir)
        answering = sum(r.state is DeviceState.HEALTHY for r in reports)
        notice = (f"the supervisor is gone: {answering} devices still answer, served by "
                  f"{len(orphans)} programs running without it; `cpppo-fleet up {hint}` replaces them "
                  f"(interrupting those devices), `cpppo-fleet down {hint}` stops them")
    if as_json:  # bytes throughout: 100,000 rows are 20 MB, never decoded and encoded again
        head, tail = json.dumps({
            "fleet": plan.fleet.name, "summary": f"{line}; {notice}" if notice else line,
            "up": bool(programs) and not orphans,
            "supervisor": "gone" if orphans else ("running" if programs else "down"),
            "healthy": sum(r.state is DeviceState.HEALTHY for r in reports), "total": len(reports),
            **((read_web(backend.state.root) or {}) if programs else {}),
            "programs": {n: {"state": p.state.value, "pid": p.pid, "started": p.started}
                         for n, p in programs.items()},
            "devices": DEVICES_MARK,
            "faults": {name: {**f.to_dict(), "describe": f.describe()}
                       for name, f in sorted(injected.items())},
        }, indent=1).encode().split(f'"{DEVICES_MARK}"'.encode())
        rows = _device_rows(plan, backend, programs, select_reports(reports, only, wanted))
        typer.echo(b"".join([head, *rows, tail]))
    elif show_all or only or wanted or len(reports) <= SUMMARY_ABOVE:
        io = _io(plan, backend)[1] if programs else None
        _table(plan.fleet.name, select_reports(reports, only, wanted), line, io)
    else:
        _summary(plan.fleet.name, reports, line, command_hint(path, state_dir))
    if notice and not as_json:
        typer.echo(f"cpppo-fleet: {notice}", err=True)
    fine = {DeviceState.HEALTHY, DeviceState.FAULTED} if faults_ok else {DeviceState.HEALTHY}
    if orphans or not all(r.state in fine for r in reports):
        raise typer.Exit(EXIT_FAILED)


def _io(plan, backend) -> tuple[set, dict]:
    """(the Class 1 adapters' names, their figures by name: open connections, packets in and
    out, per second, timeouts, ...) read from their workers' /metrics (absent: no answer)."""
    import asyncio

    from fleet.metrics import io_figures, scrape_workers, worker_urls

    adapters = {d.name: d.worker for d in plan.devices if getattr(d.options, "io", None) is not None}
    figures = {}
    if adapters:
        urls = worker_urls(plan, backend.state.root)
        figures = io_figures(asyncio.run(scrape_workers({w: u for w, u in urls.items()
                                                         if w in set(adapters.values())})))
    return set(adapters), figures


ROWS_AT_ONCE = 2000  # status --json: rows made into dicts and written by orjson at a time


def _device_rows(plan, backend, programs, reports) -> list[bytes]:
    """The reports as the JSON list of ``status --json``, a compact line each, in pieces to
    join; a Class 1 adapter's with its ``io`` figures (None: no answer).  orjson writes a list
    of a few thousand rows at a time (100,000 rows in a fifth of a second), each row then put on
    a line of its own: the bytes ``},{"name":`` only ever stand between two rows (a quote within
    a string is escaped, and nothing within a row is a list of objects with a name)."""
    import orjson

    from fleet.report import DeviceReport

    if not reports:
        return [b"[]"]
    adapters, figures = _io(plan, backend) if programs else (set(), {})
    fields = DeviceReport._fields
    pieces = [b"[\n"]
    for at in range(0, len(reports), ROWS_AT_ONCE):  # the dicts of a few rows at a time: less memory
        rows = [dict(zip(fields, r, strict=True)) if r.name not in adapters
                else {**r._asdict(), "io": figures.get(r.name)} for r in reports[at:at + ROWS_AT_ONCE]]
        if at:
            pieces.append(b",\n")
        pieces.append(orjson.dumps(rows)[1:-1].replace(b'},{"name":', b'},\n{"name":'))
    pieces.append(b"\n ]")
    return pieces


def _check_now(plan, programs, control) -> dict:
    """The history of one health sweep, now, of the devices of these programs (workers)."""
    from fleet.poller import run_sweep
    from fleet.store import DeviceHistory

    devices = [d for d in plan.devices if d.worker in programs]
    results = run_sweep(devices, plan.fleet.health_timeout, plan.fleet.health_concurrency, control)
    return {r.device: DeviceHistory(r, (r.latency,) if r.ok else ()) for r in results}


DEVICES_MARK = "@devices@"  # replaced by the device rows, one compact line each (quick at 100,000)


def _check_states(states: list[str] | None) -> set:
    from fleet.states import DeviceState

    known = {s.value: s for s in DeviceState}
    for state in states or ():
        if state not in known:
            raise typer.BadParameter(f"{state!r} is not a device state (one of {', '.join(known)})",
                                     param_hint="--state")
    return {known[s] for s in states or ()}


def select_reports(reports, only: list[str] | None, states: set):
    """The reports matching any ``only`` glob (device name, or worker name) and in any of
    ``states`` (each: all when empty)."""
    import fnmatch

    return [r for r in reports
            if (not only or any(fnmatch.fnmatchcase(r.name, p) or r.worker == p for p in only))
            and (not states or r.state in states)]


def _console():
    from rich.console import Console

    return Console(width=max(140, Console().width))


def _table(name: str, reports, line: str, io: dict | None = None) -> None:
    console = _console()
    print_device_table(console, name, reports, io=io)
    console.print(line, markup=False, highlight=False)


def _summary(name: str, reports, line: str, hint: str) -> None:
    """Counts by state for each summary column, then the devices not healthy (up to LISTED)."""
    from fleet.states import DeviceState

    console = _console()
    for table in summary_tables(name, reports):
        console.print(table)
    unwell = [r for r in reports if r.state is not DeviceState.HEALTHY]
    if unwell:
        print_device_table(console, name, unwell[:LISTED], title=f"not healthy: {len(unwell)}"
                           + (f" (the first {LISTED})" if len(unwell) > LISTED else ""))
    console.print(line, markup=False, highlight=False)
    console.print(f"{len(reports)} devices: rows with `cpppo-fleet status {hint} --all`, "
                  "`--state down` or `--only PATTERN`", markup=False, highlight=False)


def poll(path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR, as_json: bool = JSON) -> None:
    """Poll every device that is up once, now; print and store the results."""
    from fleet.poller import run_sweep
    from fleet.store import StoreError, open_store

    if is_multihost(path):
        multihost.refuse("--state-dir", state_dir)
        return multihost.poll(path, as_json)
    plan, backend = backend_for(path, state_dir)
    devices = (backend.applied_plan() or plan).devices
    begun = time.monotonic()
    from fleet.control import control_dir

    results = run_sweep(devices, plan.fleet.health_timeout, plan.fleet.health_concurrency,
                        control_dir(backend.state.root))
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
            outcome = f"ok {ms(r.latency)} ms" if r.ok else f"FAIL {r.error}"
            typer.echo(f"{r.device:<{width}}  {outcome}")
        typer.echo(f"{ok} healthy / {len(results)} polled in {elapsed:.2f} s")
    if ok != len(results):
        raise typer.Exit(EXIT_FAILED)
