"""Backends bring a planned fleet up and down.  ``process`` (supervisord) is the default;
``docker`` plugs into the same :class:`fleet.backends.base.Backend` interface."""

from __future__ import annotations

from pathlib import Path

from fleet.backends.base import Backend, BackendError
from fleet.plan import Plan

__all__ = ["Backend", "BackendError", "make_backend"]


def make_backend(plan: Plan, state_dir: Path) -> Backend:
    """The backend named by the plan's ``[fleet] backend``."""
    if plan.fleet.backend == "process":
        from fleet.backends.process import ProcessBackend

        return ProcessBackend(plan, state_dir)
    if plan.fleet.backend == "docker":
        from fleet.backends.docker.backend import DockerBackend

        return DockerBackend(plan, state_dir)
    raise BackendError(f"backend {plan.fleet.backend!r} is not available yet (use backend = \"process\")")
