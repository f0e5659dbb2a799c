"""Where a worker serves its own ``/metrics`` (:mod:`fleet.metrics`): what the worker needs to
bind it and the poller to find it, without importing prometheus-client or aiohttp."""

from __future__ import annotations

from pathlib import Path

WORKER_PORT = 9179  # a docker worker's /metrics, at its first device's address
METRICS_CONNECTIONS = 16  # a worker's /metrics connections (the poller scrapes it; within limits.MARGIN)


def worker_metrics_path(state_dir: Path | str, worker: str) -> Path:
    """Where a process-backend worker records the URL of its /metrics."""
    return Path(state_dir) / "metrics" / f"{worker}.json"
