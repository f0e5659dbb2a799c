"""``cpppo-fleet down``: stop everything and leave nothing behind (idempotent)."""

from __future__ import annotations

from pathlib import Path

import typer

from fleet.cli import multihost
from fleet.cli.common import FLEET_FILE, STATE_DIR, ProgressBar, backend_for, fail
from fleet.hosts import is_multihost


def down(path: Path = FLEET_FILE, state_dir: Path | None = STATE_DIR) -> None:
    """Stop every worker, the health poller and the supervisor; remove sockets and added addresses."""
    from fleet.backends import BackendError

    if is_multihost(path):
        multihost.refuse("--state-dir", state_dir)
        return multihost.down(path)
    plan, backend = backend_for(path, state_dir)
    with ProgressBar() as progress:
        try:
            backend.down(progress)
        except BackendError as exc:
            fail(str(exc))
    typer.echo(f"fleet {plan.fleet.name!r} is down")
