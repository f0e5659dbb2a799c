"""A fleet worker: one asyncio process (uvloop when available) hosting many devices.

Run as ``python -m fleet.worker <worker-spec.json>`` (the process backend's supervisord does).
The spec, written by the backend, names the worker, the state folder and the devices (each a
``fleet.plan.PlannedDevice``).  Every device is served through the protocol libraries'
many-devices-in-one-process APIs: ``cpppo.enip.device.model.Device.from_specs`` +
``cpppo.enip.server.transport.serve`` and ``cpppo.modbus.device.ModbusDevice.from_specs`` +
``cpppo.modbus.server.serve``.  A device that cannot be served (its address is taken, say)
is logged, recorded in the state database (``status`` shows why it is down) and retried every
few seconds while the others keep running; one whose model cannot be built (a spec its
protocol library refuses, which ``validate`` refuses too) is recorded as failed and not
retried.  SIGTERM closes all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpppo.faults import FaultState
from cpppo.server.hosting import new_event_loop
from fleet.kinds import KINDS
from fleet.plan import PlannedDevice

log = logging.getLogger("fleet.worker")

RETRY_SECONDS = 3.0  # between attempts to serve devices that failed to start
START_BATCH = 200  # devices started concurrently


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (each device holds 1-2 listening sockets
    plus its clients' connections); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def retain_path(state_dir: str | Path, device: str) -> Path:
    """The journal of a retained device's client writes, in the fleet's state folder."""
    return Path(state_dir) / "retain" / f"{device}.journal"


def build(device: PlannedDevice, state_dir: str | Path | None = None) -> Any:
    """The device model for a planned device (ValueError naming what its kind refuses); the
    same call ``validate`` makes for each group (fleet.config.devices).  A retained device
    (``retain = true``) restores and journals its client writes in ``state_dir``."""
    retain = str(retain_path(state_dir, device.name)) if device.retain and state_dir else None
    return KINDS[device.kind].build(device.options, device.identity_dict, n=device.n, retain=retain,
                                    home=device.home)


async def start(device: PlannedDevice, faults: FaultState | None = None,
                state_dir: str | Path | None = None) -> Any:
    """Serve one device; returns the server handle (``close()``, ``wait_closed()``).  A model
    that cannot be built raises :class:`Unservable`; a socket that cannot be bound, OSError.
    ``faults``: the device's fault slot (the worker keeps it across restarts of the device)."""
    try:
        model = build(device, state_dir) if state_dir else build(device)
    except ValueError as exc:
        raise Unservable(str(exc)) from None
    if faults is not None:
        model.faults = faults
    return await KINDS[device.kind].serve(model, device.host, device.port, device.delay)


class Unservable(Exception):
    """A device its kind cannot build (a spec the protocol library refuses): retrying will not
    help, so the worker gives up on it (``status`` shows it failed, with this reason)."""


def devices(count: int) -> str:
    """``1 device``, ``2 devices``.

    >>> devices(1), devices(0), devices(3)
    ('1 device', '0 devices', '3 devices')
    """
    return f"{count} device" if count == 1 else f"{count} devices"


def _why(exc: Exception) -> str:
    """Why a device could not be served, in one line (a bind error: ``Address already in use``)."""
    if isinstance(exc, OSError):
        from cpppo.server.hosting import bind_error_text

        return bind_error_text(exc)
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class Worker:
    """The devices of one worker spec, served on the running loop."""

    def __init__(self, name: str, devices: list[PlannedDevice],
                 report: Callable[[dict[str, str], set[str]], None] | None = None,
                 state_dir: str | Path | None = None) -> None:
        self.name = name
        self.state_dir = state_dir  # the fleet's state folder (retained writes live there)
        if not state_dir and any(d.retain for d in devices):
            log.warning("%s: retain = true, but the worker has no state folder: writes are not kept", name)
        self.devices = devices
        self.servers: dict[str, Any] = {}
        self.errors: dict[str, str] = {}  # device -> why it cannot be served (last attempt)
        self.failed: set[str] = set()  # devices given up on (Unservable): never retried
        self.report = report  # called with ``errors`` and ``failed`` after every attempt
        self.stopping = asyncio.Event()
        self.faults = {d.name: FaultState() for d in devices}  # what the control channel changes
        self.control: Any = None

    async def start_pending(self) -> list[PlannedDevice]:
        """Try to serve every device not yet served; return those that failed."""
        pending = [d for d in self.devices if d.name not in self.servers and d.name not in self.failed]
        failed = []
        for i in range(0, len(pending), START_BATCH):
            batch = pending[i:i + START_BATCH]
            results = await asyncio.gather(*(start(d, self.faults[d.name], self.state_dir) for d in batch),
                                           return_exceptions=True)
            for device, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    why = _why(result)
                    log.error("%s: cannot serve at %s: %s", device.name, device.endpoint, why)
                    self.errors[device.name] = f"cannot serve at {device.endpoint}: {why}"
                    if isinstance(result, Unservable):
                        self.failed.add(device.name)
                    else:
                        failed.append(device)
                else:
                    self.servers[device.name] = result
                    self.errors.pop(device.name, None)
        if self.report is not None:
            self.report(dict(self.errors), set(self.failed))
        return failed

    async def run(self) -> None:
        failed = await self.start_pending()
        log.info("%s: serving %d of %s (pid %d)", self.name, len(self.servers), devices(len(self.devices)),
                 os.getpid())
        while failed and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), RETRY_SECONDS)
            if not self.stopping.is_set():
                failed = await self.start_pending()
                if not failed:
                    log.info("%s: now serving all %s", self.name, devices(len(self.devices)))
        await self.stopping.wait()
        await self.close()

    async def serve_control(self, control: Path, events: list[Any], epoch: float | None = None) -> None:
        """Serve the fault control socket in ``control`` and run this worker's scheduled faults."""
        from fleet.faults import attach

        self.control = await attach(self.name, control, self.faults, events, epoch)

    async def close(self) -> None:
        if self.control is not None:
            self.control.close()
        for server in self.servers.values():
            server.close()
        await asyncio.gather(*(s.wait_closed() for s in self.servers.values()), return_exceptions=True)
        log.info("%s: closed %s", self.name, devices(len(self.servers)))
        self.servers.clear()


def _store_writer(database: Path, worker: str) -> Callable[[Callable[[Any], None]], None]:
    """Run a write on the state database; a database that cannot be written is logged, never
    fatal (the devices matter more; the health poller repairs the database)."""
    from fleet.store import Store, StoreError

    def write(action: Callable[[Any], None]) -> None:
        try:
            with Store(database) as store:
                action(store)
        except (StoreError, sqlite3.Error) as exc:
            log.warning("%s: %s", worker, str(exc).splitlines()[0])

    return write


async def serve_spec(spec: dict[str, Any]) -> None:
    """Serve a worker spec until SIGTERM/SIGINT."""
    name, pid = spec["worker"], os.getpid()
    write = None
    if spec.get("state_dir"):
        write = _store_writer(Path(spec["state_dir"]) / "health.sqlite", name)
        write(lambda store: store.record_start(name, pid))
    report = None if write is None else (
        lambda errors, failed: write(lambda store: store.record_serve_errors(name, pid, errors, failed)))
    worker = Worker(name, [PlannedDevice.from_json(d) for d in spec["devices"]], report,
                    spec.get("state_dir") or None)
    control = spec.get("control_dir") or (spec.get("state_dir") and str(Path(spec["state_dir"]) / "control"))
    if control:
        from fleet.faults import Event

        events = [Event(**e) for e in spec.get("fault_events", [])]
        try:
            await worker.serve_control(Path(control), events, spec.get("fault_epoch"))
        except OSError as exc:  # the devices matter more than the control channel
            log.error("%s: no control socket in %s: %s", name, control, exc.strerror or exc)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    await worker.run()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    if len(args) != 1:
        print("usage: python -m fleet.worker <worker-spec.json>", file=sys.stderr)
        return 2
    try:
        spec = json.loads(Path(args[0]).read_text())
    except (OSError, ValueError) as exc:
        print(f"fleet.worker: cannot read {args[0]}: {exc}", file=sys.stderr)
        return 2
    return run(spec)


def run(spec: dict[str, Any]) -> int:
    """Serve a worker spec until stopped (SIGTERM/SIGINT): raise the open-files limit, then run
    :func:`serve_spec` on uvloop where available.  Returns the exit status."""
    raise_fd_limit()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve_spec(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
