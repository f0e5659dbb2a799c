"""What the fleet page and ``/metrics`` show: the health poller's own view of every device,
updated as each poll ends (:meth:`FleetView.record`) and from the state database after each
sweep (restarts, devices a worker cannot serve).

A device is ``healthy`` (its last poll succeeded), ``down`` (it failed, or its worker cannot
serve it), ``starting`` (not polled yet), ``unknown`` (no poll for longer than two intervals
and a timeout) or ``faulted`` (a fault is injected on purpose).  The poller knows no
supervisor, so this is the device's side of ``status``: the same on both backends.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Mapping
from typing import Any

from fleet.plan import Plan, PlannedDevice
from fleet.store import HealthResult, ServeError

STATES = ("healthy", "down", "starting", "unknown", "faulted")
HISTORY = 30  # latencies kept per device for its sparkline


class FleetView:
    """The poller's view of ``plan``'s devices."""

    def __init__(self, plan: Plan, histogram: Any = None) -> None:
        self.histogram = histogram  # latencies by device (fleet.metrics.Latencies), fed on every success
        self.changes = 0  # counts what turns a device's state (a cached /metrics is stale after it)
        self.last: dict[str, HealthResult] = {}
        self.latencies: dict[str, array] = {}  # the last HISTORY, oldest first (float32)
        self.restarts: dict[str, int] = {}  # worker -> restarts
        self.unserved: dict[str, str] = {}  # device -> why its worker cannot serve it
        self.faults: dict[str, list[str]] = {}  # device -> active faults (none until faults exist)
        self.set_plan(plan)

    def set_plan(self, plan: Plan) -> None:
        self.plan = plan
        self.devices: dict[str, PlannedDevice] = {d.name: d for d in plan.devices}
        self.version = hash(tuple(self.devices))
        histogram = self.histogram
        for table in (self.last, self.latencies, *((histogram.counts, histogram.sums) if histogram else ())):
            for name in [n for n in table if n not in self.devices]:  # devices the plan dropped
                del table[name]
        self.changes += 1
        fleet = plan.fleet
        self.stale_after = 2 * fleet.health_interval + fleet.health_timeout + 1.0

    def record(self, result: HealthResult) -> None:
        before = self.last.get(result.device)
        self.last[result.device] = result
        if before is None or before.ok != result.ok:
            self.changes += 1
        if result.ok and result.latency is not None:
            ring = self.latencies.get(result.device)
            if ring is None:
                ring = self.latencies[result.device] = array("f")
            elif len(ring) >= HISTORY:
                del ring[0]
            ring.append(result.latency)
            if self.histogram is not None:
                self.histogram.observe(result.device, result.latency)

    def set_store(self, starts: Mapping[str, list], serve_errors: Mapping[str, ServeError]) -> None:
        restarts = {worker: max(0, len(runs) - 1) for worker, runs in starts.items()}
        current = {worker: runs[-1][0] for worker, runs in starts.items() if runs}
        unserved = {name: e.error for name, e in serve_errors.items() if current.get(e.worker) == e.pid}
        if (restarts, unserved) != (self.restarts, self.unserved):
            self.restarts, self.unserved = restarts, unserved
            self.changes += 1

    def set_faults(self, faults: dict[str, list[str]]) -> None:
        if faults != self.faults:
            self.faults = faults
            self.changes += 1

    def state(self, name: str, now: float) -> str:
        if self.faults.get(name):
            return "faulted"  # on purpose: whatever the polls say
        if name in self.unserved:
            return "down"
        last = self.last.get(name)
        if last is None:
            return "starting"
        if now - last.time > self.stale_after:
            return "unknown"
        return "healthy" if last.ok else "down"

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        out = []
        for name, device in self.devices.items():
            last = self.last.get(name)
            out.append({"name": name, "kind": device.kind, "address": device.endpoint,
                        "worker": device.worker,
                        "state": self.state(name, now),
                        "latency": last.latency if last is not None and last.ok else None,
                        "error": self.unserved.get(name) or (last.error if last is not None else None),
                        "checked": last.time if last is not None else None,
                        "restarts": self.restarts.get(device.worker, 0),
                        "faults": self.faults.get(name, [])})
        return out

    def snapshot(self, full: bool = True) -> dict[str, Any]:
        """Columns of every device, in plan order (``full``: with names, kinds, addresses and
        latency histories, which the page loads once per plan)."""
        rows = self.rows()
        index = {state: i for i, state in enumerate(STATES)}
        out: dict[str, Any] = {
            "fleet": self.plan.fleet.name, "time": time.time(), "version": self.version, "states": STATES,
            "state": [index[r["state"]] for r in rows],
            "latency": [None if r["latency"] is None else round(r["latency"] * 1000, 2) for r in rows],
            "error": [r["error"] for r in rows], "checked": [r["checked"] for r in rows],
            "restarts": [r["restarts"] for r in rows],
            "faults": [", ".join(r["faults"]) or None for r in rows],
        }
        if full:
            out["devices"] = [[r["name"], r["kind"], r["address"], r["worker"]] for r in rows]
            out["history"] = [[round(v * 1000, 2) for v in self.latencies.get(r["name"], ())] for r in rows]
        return out
