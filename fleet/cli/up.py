"""``cpppo-fleet up``: bring the fleet up (idempotent; converges after an interrupted run)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fleet.cli.common import EXIT_FAILED, FLEET_FILE, STATE_DIR, ProgressBar, backend_for, command_hint, fail

ONLY = typer.Option(None, "--only", help="Bring up only the devices matching this glob "
                                         "(repeatable; adds to those already up).")
WAIT = typer.Option(True, "--wait/--no-wait", help="Wait until every device answers a health poll.")
TIMEOUT = typer.Option(60.0, min=0.0, help="Seconds to wait for every device to be healthy.")


def up(path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR, only: list[str] | None = ONLY,
       wait: bool = WAIT, timeout: float = TIMEOUT) -> None:
    """Bring the fleet up under its backend and return once it is up (the supervisor keeps running)."""
    from fleet.backends import BackendError

    plan, backend = backend_for(path, state_dir)
    with ProgressBar() as progress:
        try:
            applied = backend.up(only, progress)
        except BackendError as exc:
            fail(str(exc))
        healthy, total, failing = (wait_healthy(backend, applied, timeout, progress) if wait
                                   else (None, len(applied.devices), []))
    hint = command_hint(path, state_dir)
    state = f"{_count(total, 'device')} started"
    if healthy is not None:
        state = f"{healthy}/{total} devices healthy"
    typer.echo(f"fleet {plan.fleet.name!r} is up: {state} in {_count(len(applied.workers), 'worker')} "
               f"(state in {backend.state.root})")
    typer.echo(f"  status: cpppo-fleet status {hint}")
    typer.echo(f"  down:   cpppo-fleet down {hint}")
    if failing:
        first = failing[0]
        fail(f"{_count(len(failing), 'device')} not healthy; first: {first.device}: {first.error}",
             EXIT_FAILED)


def _count(number: int, noun: str) -> str:
    """``1 device``, ``3 devices``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def wait_healthy(backend, applied, timeout: float, progress) -> tuple[int, int, list]:
    """Poll the not-yet-healthy devices until all answer or ``timeout``; results go to the store.
    A device its worker cannot serve (address taken, ...) fails with the worker's reason, and
    when only such devices are left the wait ends at once.
    A device under an injected fault (``cpppo-fleet fault``, a ``[[fault]]`` schedule) is
    misbehaving on purpose: it is not waited for.
    Returns (healthy, total, last failing results)."""
    from dataclasses import replace

    from fleet.control import control_dir
    from fleet.faults import active
    from fleet.health import run_sweep
    from fleet.store import StoreError, open_store

    fleet = applied.fleet
    pending = list(applied.devices)
    total = len(pending)
    deadline = time.monotonic() + timeout
    failing: list = []
    try:
        store = open_store(backend.state.database)
    except StoreError as exc:
        fail(str(exc))
    with store:
        while pending:
            progress(total - len(pending), total, "devices healthy")
            results = run_sweep(pending, min(fleet.health_timeout, 2.0), fleet.health_concurrency)
            pids = {name: p.pid for name, p in backend.status().items()}
            unserved = {name: e for name, e in store.serve_errors().items() if pids.get(e.worker) == e.pid}
            results = [replace(r, ok=False, latency=None, error=unserved[r.device].error)
                       if r.device in unserved else r for r in results]
            store.record(results, fleet.health_retention)
            injected = active(control_dir(backend.state.root))
            ok = {r.device for r in results if r.ok or r.device in injected}
            failing = [r for r in results if r.device not in ok]
            pending = [d for d in pending if d.name not in ok]
            if not pending or time.monotonic() > deadline or all(d.name in unserved for d in pending):
                break
            time.sleep(0.2)
    progress(total - len(pending), total, "devices healthy")
    return total - len(pending), total, failing if pending else []
