"""``cpppo-fleet up``: bring the fleet up (idempotent; converges after an interrupted run)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fleet.cli import multihost
from fleet.cli.common import (
    EXIT_FAILED,
    FLEET_FILE,
    STATE_DIR,
    ProgressBar,
    backend_for,
    check_here,
    command_hint,
    fail,
)
from fleet.hosts import is_multihost

ONLY = typer.Option(None, "--only", help="Bring up only the devices matching this glob "
                                         "(repeatable; adds to those already up).")
WAIT = typer.Option(True, "--wait/--no-wait", help="Wait until every device answers a health poll.")
TIMEOUT = typer.Option(60.0, min=0.0, help="Seconds to wait for every device to be healthy.")


def up(path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR, only: list[str] | None = ONLY,
       wait: bool = WAIT, timeout: float = TIMEOUT) -> None:
    """Bring the fleet up under its backend and return once it is up (the supervisor keeps running)."""
    from fleet.backends import BackendError

    if is_multihost(path):
        multihost.refuse("--only", only)
        multihost.refuse("--state-dir", state_dir)
        return multihost.up(path, timeout)
    plan, backend = backend_for(path, state_dir, validate=True)
    check_here(path, plan)
    with ProgressBar() as progress:
        try:
            applied = backend.up(only, progress)
        except BackendError as exc:
            fail(str(exc))
        healthy, total, failing = (_wait(backend, applied, timeout, progress) if wait
                                   else (None, len(applied.devices), []))
    hint = command_hint(path, state_dir)
    for line in backend.notices:
        typer.echo(line)
    for worker, devices in backend.interrupted.items():
        typer.echo(f"restarted {worker}, interrupting {_count(len(devices), 'device')}: {', '.join(devices)}")
    state = f"{_count(total, 'device')} started"
    if healthy is not None:
        state = f"{healthy}/{total} devices healthy"
    typer.echo(f"fleet {plan.fleet.name!r} is up: {state} in {_count(len(applied.workers), 'worker')} "
               f"(state in {backend.state.root})")
    typer.echo(f"  status: cpppo-fleet status {hint}")
    web = wait_web(backend.state.root, 5.0 if healthy is not None else 0.0)
    if web is not None and web.get("web_error"):
        typer.echo(f"  page:   not served: {web['web_error']} (see [fleet] web)")
    elif web is not None:
        typer.echo(f"  page:   {web['web']}")
        typer.echo(f"  metrics: {web['metrics']}")
    typer.echo(f"  down:   cpppo-fleet down {hint}")
    if failing:
        first = failing[0]
        fail(f"{_count(len(failing), 'device')} not healthy; first: {first.device}: {first.error}",
             EXIT_FAILED)


def wait_web(state_dir: Path, timeout: float) -> dict[str, str | None] | None:
    """The fleet page's address (or why it is not served) once the health poller has recorded
    it (within ``timeout``)."""
    from fleet.web.serve import read_web

    deadline = time.monotonic() + timeout
    while (web := read_web(state_dir)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return web


def _count(number: int, noun: str) -> str:
    """``1 device``, ``3 devices``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _wait(backend, applied, timeout: float, progress) -> tuple[int, int, list]:
    """Ask the fleet's health poller for a sweep now and wait for its verdict on every device
    just brought up: (healthy, total, last failing results).  Devices under an injected fault
    (``cpppo-fleet fault``, a ``[[fault]]`` schedule) misbehave on purpose: not waited for."""
    from fleet.control import control_dir
    from fleet.faults import active
    from fleet.health import request_sweep, wait_healthy

    asked = request_sweep(backend.state.root)
    healthy, failing = wait_healthy(backend.state.database, applied.devices, asked, timeout,
                                    lambda: {name: p.pid for name, p in backend.status().items()}, progress,
                                    excused=lambda: active(control_dir(backend.state.root)))
    return healthy, len(applied.devices), failing
