"""``cpppo-fleet logs``: the output of the worker hosting a device (or of the health poller)."""

from __future__ import annotations

from pathlib import Path

import typer

from fleet.cli import multihost
from fleet.cli.common import EXIT_CONFIG, FLEET_FILE, STATE_DIR, backend_for, command_hint, fail
from fleet.hosts import is_multihost


def logs(device: str = typer.Argument(..., help="A device name, a worker name (w000) or 'health'."),
         path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR,
         lines: int = typer.Option(50, "--lines", "-n", min=1, help="How many lines.")) -> None:
    """Print the last lines of the log of the worker hosting DEVICE."""
    from fleet.backends.base import HEALTH_PROGRAM

    if is_multihost(path):
        multihost.refuse("--state-dir", state_dir)
        return multihost.logs(path, device, lines)
    plan, backend = backend_for(path, state_dir)
    workers = {w.name for w in plan.workers} | {HEALTH_PROGRAM} | set(backend.status())
    if device in workers:
        program = device
    else:
        try:
            program = plan.device(device).worker
        except KeyError:
            fail(f"no device or worker named {device!r} in {path}", EXIT_CONFIG)
        typer.echo(f"# {device} is hosted by worker {program}", err=True)
    text = backend.logs(program, lines)
    if not text:
        fail(f"no log of {program} yet: the fleet has not been brought up "
             f"(cpppo-fleet up {command_hint(path, state_dir)})")
    typer.echo(text, nl=False)
