"""``cpppo-fleet restart``: restart the workers hosting the devices matching a pattern."""

from __future__ import annotations

from pathlib import Path

import typer

from fleet.cli import multihost
from fleet.cli.common import EXIT_CONFIG, FLEET_FILE, STATE_DIR, ProgressBar, backend_for, fail
from fleet.hosts import is_multihost

PATTERN = typer.Argument(..., help="Glob over device names (or a worker name, or 'health').")


def restart(pattern: str = PATTERN,
            path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR) -> None:
    """Restart the workers hosting the matching devices (their co-hosted devices restart too)."""
    from fleet.backends import BackendError
    from fleet.backends.base import HEALTH_PROGRAM

    if is_multihost(path):
        multihost.refuse("--state-dir", state_dir)
        return multihost.restart(path, pattern)
    plan, backend = backend_for(path, state_dir)
    applied = backend.applied_plan()
    if pattern == HEALTH_PROGRAM:  # and its shards
        programs = sorted(p for p in backend.status()
                          if p == HEALTH_PROGRAM or p.startswith(f"{HEALTH_PROGRAM}-")) or [HEALTH_PROGRAM]
    else:
        devices = (applied or plan).select([pattern])
        if not devices:
            fail(f"no device that is up matches {pattern!r}", EXIT_CONFIG)
        programs = sorted({d.worker for d in devices})
    with ProgressBar() as progress:
        try:
            backend.restart(programs, progress)
        except BackendError as exc:
            fail(str(exc))
    typer.echo(f"restarted {', '.join(programs)}")
