"""Per-device status: the plan, the backend's programs and the health store, combined."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from fleet.backends.base import ProgramStatus
from fleet.bulk import no_collections
from fleet.plan import Plan
from fleet.states import DeviceState, ProcessState, device_state
from fleet.store import DeviceHistory, ServeError


class DeviceReport(NamedTuple):
    """One row of ``cpppo-fleet status``.  (A named tuple: made ten times as fast as a frozen
    dataclass, which a status of 100,000 devices feels.)"""

    name: str  # device name
    kind: str  # a key of fleet.kinds.KINDS
    endpoint: str  # IP:port
    worker: str  # worker hosting it
    state: DeviceState  # see fleet.states
    uptime: float | None  # seconds its worker has run, if running
    restarts: int  # times its worker was restarted since the fleet came up
    last_ok: bool | None  # last health result since its worker started (None: none yet)
    error: str | None  # the last result's error
    checked: float | None  # epoch seconds of the last result
    latency: float | None  # last successful poll's latency, seconds
    p50: float | None  # median latency over the retained polls
    p99: float | None  # 99th percentile latency over the retained polls
    fault: str | None = None  # the injected fault, as status shows it ("latency 300ms until 12:03:10")

    def to_json(self) -> dict:
        data = dict(zip(self._fields, self, strict=True))
        data["state"] = self.state.value
        return data

    def column(self, name: str) -> str:
        """The value of a summary column (``kind``, ``worker``, ``state``, ...) as text."""
        value = getattr(self, name)
        return value.value if isinstance(value, DeviceState) else str(value)


def device_reports(plan: Plan, applied: Plan | None, programs: Mapping[str, ProgramStatus],
                   history: Mapping[str, DeviceHistory], starts: Mapping[str, list],
                   now: float | None = None,
                   serve_errors: Mapping[str, ServeError] | None = None,
                   faults: Mapping[str, Any] | None = None) -> list[DeviceReport]:
    """A report for every device of the plan (those not brought up are STOPPED).  A device its
    running worker says it cannot serve (``serve_errors``) is DOWN with that error, whatever
    answers at its address, or FAILED when the worker gave up on it.  A running device with an
    injected fault (``faults``: device -> :class:`cpppo.faults.Fault`) is FAULTED, whatever its
    polls say."""
    now = time.time() if now is None else now
    everything = applied is plan  # (status: the plan is the applied one) all brought up
    selected = set() if applied is None or everything else {d.name for d in applied.devices}
    fleet = plan.fleet
    stale_after = 2 * fleet.health_interval + fleet.health_timeout + 1.0
    serve_errors, faults = serve_errors or {}, faults or {}
    restarts = {worker: max(0, len(s) - 1) for worker, s in starts.items()}
    running = ProcessState.RUNNING
    stopped = (None, ProcessState.STOPPED, None, None)
    hosting = {worker: (p, p.state, p.started, now - p.started if p.started else None)
               for worker, p in programs.items()}  # (program, its state, started, uptime) by worker
    out = []
    append = out.append
    with no_collections():  # 100,000 reports: see fleet.bulk
        for device in plan.devices:
            name, worker = device.name, device.worker
            hosted = everything or name in selected
            program, process, started, uptime = hosting.get(worker, stopped) if hosted else stopped
            hist = history.get(name)
            last = hist.last if hist is not None else None
            if last is not None:
                last_ok = last.ok if started is not None and last.time >= started else None
                fresh = now - last.time <= stale_after
                error, checked = last.error, last.time
                latency = last.latency if last.ok else None
                shown_ok = last.ok
            else:
                last_ok = error = checked = latency = shown_ok = None
                fresh = False
            p50, p99 = hist.percentiles() if hist is not None else (None, None)
            state = None
            if serve_errors:
                unserved = serve_errors.get(name)
                if unserved is not None and program is not None and unserved.pid == program.pid:
                    last_ok, fresh, error = False, True, unserved.error
                    state = DeviceState.FAILED if unserved.final else None  # its worker gave up on it
            state = state or device_state(process, last_ok, fresh)
            shown = None
            if faults:
                fault = faults.get(name)
                if fault is not None and process is running:
                    state = DeviceState.FAULTED
                    shown = fault.describe() + ("" if fault.until is None else
                                                time.strftime(" until %H:%M:%S", time.localtime(fault.until)))
            append(DeviceReport(name, device.kind, device.endpoint, worker, state, uptime,
                                restarts.get(worker, 0), shown_ok, error, checked, latency, p50, p99, shown))
    return out


def summary(reports: Sequence[DeviceReport]) -> str:
    healthy = sum(1 for r in reports if r.state is DeviceState.HEALTHY)
    counts: dict[str, int] = {}
    for r in reports:
        if r.state is not DeviceState.HEALTHY:
            counts[r.state.value] = counts.get(r.state.value, 0) + 1
    rest = "".join(f", {n} {state}" for state, n in sorted(counts.items()))
    return f"{healthy} healthy / {len(reports)} total{rest}"
