"""A fleet worker: one asyncio process (uvloop when available) hosting many devices.

Run as ``python -m fleet.worker <worker-spec.json>`` (the process backend's supervisord does).
The spec, written by the backend, names the worker, the state folder and the devices (each a
``fleet.plan.PlannedDevice``).  Every device is served through the protocol libraries'
many-devices-in-one-process APIs: ``cpppo.server.enip.device.Device.from_specs`` +
``cpppo.server.enip.server.serve`` and ``cpppo.modbus.device.ModbusDevice.from_specs`` +
``cpppo.modbus.server.serve``.  A device that cannot be served (its address is taken, say)
is logged, recorded in the state database (``status`` shows why it is down) and retried every
few seconds while the others keep running.  SIGTERM closes all.
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

from cpppo.server.hosting import new_event_loop
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


def build(device: PlannedDevice) -> Any:
    """The device model for a planned device (ValueError for a bad spec)."""
    if device.kind == "enip":
        from cpppo.server.enip.device import Device

        return Device.from_specs(list(device.specs), identity=device.identity_dict,
                                 route_path=device.route_path, simple=device.simple)
    from cpppo.modbus.device import ModbusDevice

    return ModbusDevice.from_specs(list(device.specs), unit_ids=device.unit_ids,
                                   identity=device.identity_dict)


async def start(device: PlannedDevice) -> Any:
    """Serve one device; returns the server handle (``close()``, ``wait_closed()``)."""
    if device.kind == "modbus-rtu":
        from fleet.rtu_lines import start as start_rtu

        return await start_rtu(device)
    model = build(device)
    if device.kind == "enip":
        from cpppo.server.enip.server import serve

        return await serve(model, host=device.host, port=device.port, udp=True, delay=device.delay)
    from cpppo.modbus.server import serve as serve_modbus

    return await serve_modbus(model, host=device.host, port=device.port, delay=device.delay)


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
                 report: Callable[[dict[str, str]], None] | None = None) -> None:
        self.name = name
        self.devices = devices
        self.servers: dict[str, Any] = {}
        self.errors: dict[str, str] = {}  # device -> why it cannot be served (last attempt)
        self.report = report  # called with ``errors`` after every attempt
        self.stopping = asyncio.Event()

    async def start_pending(self) -> list[PlannedDevice]:
        """Try to serve every device not yet served; return those that failed."""
        pending = [d for d in self.devices if d.name not in self.servers]
        failed = []
        for i in range(0, len(pending), START_BATCH):
            batch = pending[i:i + START_BATCH]
            results = await asyncio.gather(*(start(d) for d in batch), return_exceptions=True)
            for device, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    why = _why(result)
                    log.error("%s: cannot serve at %s: %s", device.name, device.endpoint, why)
                    self.errors[device.name] = f"cannot serve at {device.endpoint}: {why}"
                    failed.append(device)
                else:
                    self.servers[device.name] = result
                    self.errors.pop(device.name, None)
        if self.report is not None:
            self.report(dict(self.errors))
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

    async def close(self) -> None:
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
        lambda errors: write(lambda store: store.record_serve_errors(name, pid, errors)))
    worker = Worker(name, [PlannedDevice.from_json(d) for d in spec["devices"]], report)
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
