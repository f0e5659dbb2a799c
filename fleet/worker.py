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
from fleet.bulk import collect_less, no_collections
from fleet.kinds import KINDS
from fleet.limits import raise_fd_limit
from fleet.plan import PlannedDevice, devices_from_json

log = logging.getLogger("fleet.worker")

RETRY_SECONDS = 3.0  # between attempts to serve devices that failed to start
START_BATCH = 200  # devices started concurrently


def retain_path(state_dir: str | Path, device: str) -> Path:
    """The journal of a retained device's client writes, in the fleet's state folder."""
    return Path(state_dir) / "retain" / f"{device}.journal"


def files_base(device: PlannedDevice) -> Callable[[str], str]:
    """Where a file the fleet file names is (a playback recording, a ``tags_from`` export):
    relative to the fleet file's directory, seen under the device's ``files_root`` (the docker
    backend bind-mounts each such file at ``files_root`` + its host path).

    >>> from dataclasses import replace
    >>> from fleet.config import parse
    >>> from fleet.plan import expand
    >>> text = '[fleet]\\nname = "f"\\n[[device]]\\nname = "m{n}"\\nkind = "modbus"\\nregisters = ["1=0"]'
    >>> device, = expand(parse(text, source="/f/fleet.toml")).devices
    >>> files_base(device)("rec.hst"), files_base(device._replace(files_root="/files"))("../rec.hst")
    ('/f/rec.hst', '/files/rec.hst')
    """
    home, root = device.home, device.files_root
    if not root:
        return lambda name: os.path.join(home, name) if home else name
    return lambda name: root + os.path.normpath(os.path.join(home or "/", name))


def build(device: PlannedDevice, state_dir: str | Path | None = None) -> Any:
    """The device model for a planned device (ValueError naming what its kind refuses); the
    same call ``validate`` makes for each group (fleet.config.devices).  A retained device
    (``retain = true``) restores and journals its client writes in ``state_dir``."""
    retain = str(retain_path(state_dir, device.name)) if device.retain and state_dir else None
    return KINDS[device.kind].build(device.options, device.identity_dict, n=device.n, retain=retain,
                                    home=files_base(device))


async def start(device: PlannedDevice, faults: FaultState | None = None, pool: Any = None,
                state_dir: str | Path | None = None) -> Any:
    """Serve one device; returns the server handle (``close()``, ``wait_closed()``).  A model
    that cannot be built raises :class:`Unservable`; a socket that cannot be bound, OSError.
    ``faults``: the device's fault slot (the worker keeps it across restarts of the device);
    ``pool``: the worker's connections (a capped ``cpppo.server.stream.ConnectionSet``);
    ``state_dir``: the fleet's state folder (retained writes live there)."""
    try:
        model = build(device, state_dir) if state_dir else build(device)
    except ValueError as exc:
        raise Unservable(str(exc)) from None
    if faults is not None:
        model.faults = faults
    return await KINDS[device.kind].serve(model, device.host, device.port, device.delay, device.options, pool)


def connection_cap(configured: int, sockets: int, fd_limit: int | None = None) -> int:
    """How many connections one worker accepts across its devices (one more evicts the longest
    idle of them): ``configured`` (fleet.toml ``worker_max_connections``), but never more than
    the open-files limit leaves after its devices' ``sockets`` (listening: ``Kind.sockets``
    each) and a margin, so idle connections cannot exhaust the worker's descriptors and lock
    every device out.

    >>> connection_cap(0, 200, fd_limit=1024), connection_cap(500, 200, fd_limit=1024)
    (760, 500)
    """
    from fleet.limits import MARGIN

    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    room = max(fd_limit - sockets - MARGIN, 16)
    return min(configured, room) if configured else room


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
                 max_connections: int = 0, state_dir: str | Path | None = None) -> None:
        from cpppo.server.stream import ConnectionSet

        self.name = name
        self.state_dir = state_dir  # the fleet's state folder (retained writes live there)
        if not state_dir and any(d.retain for d in devices):
            log.warning("%s: retain = true, but the worker has no state folder: writes are not kept", name)
        self.devices = devices
        sockets = sum(KINDS[d.kind].sockets for d in devices)
        self.pool = ConnectionSet(connection_cap(max_connections, sockets))  # ``.evictions`` counts
        self.servers: dict[str, Any] = {}
        self.errors: dict[str, str] = {}  # device -> why it cannot be served (last attempt)
        self.failed: set[str] = set()  # devices given up on (Unservable): never retried
        self.report = report  # called with ``errors`` and ``failed`` after every attempt
        self.stopping = asyncio.Event()
        self.faults = {d.name: FaultState() for d in devices}  # what the control channel changes
        self.control: Any = None
        self.grown = asyncio.Event()  # devices were added (grow): serve them now

    def grow(self, devices: list[PlannedDevice]) -> list[str]:
        """Add the devices not yet hosted (a fleet growing: ``up`` after ``up --only``); the
        running ones are not touched.  Returns the names added."""
        known = {d.name for d in self.devices}
        added = [d for d in devices if d.name not in known]
        if added:
            self.devices.extend(added)
            for device in added:  # the control channel reaches them too (the dict is shared with it)
                self.faults.setdefault(device.name, FaultState())
            self.grown.set()
        return [d.name for d in added]

    async def start_pending(self) -> list[PlannedDevice]:
        """Try to serve every device not yet served; return those that failed."""
        pending = [d for d in self.devices if d.name not in self.servers and d.name not in self.failed]
        failed = []
        # devices of big exports are millions of objects: no collections while building; what
        # they are made of lives as long as the worker: frozen, never scanned again
        with no_collections(freeze=True):
            for i in range(0, len(pending), START_BATCH):
                batch = pending[i:i + START_BATCH]
                results = await asyncio.gather(*(start(d, self.faults[d.name], self.pool, self.state_dir)
                                                 for d in batch),
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
        while not self.stopping.is_set():
            waits = [asyncio.ensure_future(e.wait()) for e in (self.stopping, self.grown)]
            await asyncio.wait(waits, timeout=RETRY_SECONDS if failed else None,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            if self.stopping.is_set():
                break
            if self.grown.is_set():
                self.grown.clear()
                log.info("%s: now hosting %s", self.name, devices(len(self.devices)))
            retried = bool(failed)
            failed = await self.start_pending()
            if retried and not failed:
                log.info("%s: now serving all %s", self.name, devices(len(self.devices)))
        await self.close()

    async def serve_control(self, control: Path, events: list[Any], epoch: float | None = None,
                            group: int | None = None) -> None:
        """Serve the fault control socket in ``control`` and run this worker's scheduled faults."""
        from fleet.faults import attach

        self.control = await attach(self.name, control, self.faults, events, epoch, group)

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


async def serve_spec(spec: dict[str, Any], source: Path | None = None) -> None:
    """Serve a worker spec until SIGTERM/SIGINT; on SIGHUP, serve the devices added to the
    spec file ``source`` (a growing fleet) without touching the others."""
    name, pid = spec["worker"], os.getpid()
    write = None
    if spec.get("state_dir"):
        write = _store_writer(Path(spec["state_dir"]) / "health.sqlite", name)
        write(lambda store: store.record_start(name, pid, serving=True))
    report = None if write is None else (
        lambda errors, failed: write(lambda store: store.record_serve_errors(name, pid, errors, failed)))
    worker = Worker(name, devices_from_json(spec), report,
                    spec.get("max_connections", 0), spec.get("state_dir") or spec.get("retain_root") or None)
    control = spec.get("control_dir") or (spec.get("state_dir") and str(Path(spec["state_dir"]) / "control"))
    if control:
        from fleet.faults import Event

        events = [Event(**e) for e in spec.get("fault_events", [])]
        try:
            await worker.serve_control(Path(control), events, spec.get("fault_epoch"),
                                       spec.get("control_group"))
        except OSError as exc:  # the devices matter more than the control channel
            log.error("%s: no control socket in %s: %s", name, control, exc.strerror or exc)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    if source is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: _grow(worker, source))
    metrics = await serve_worker_metrics(name, worker.servers, worker.devices, spec.get("state_dir"))
    try:
        await worker.run()
    finally:
        if metrics is not None:
            await metrics.cleanup()


async def serve_worker_metrics(worker: str, servers: dict[str, Any], devices: list[PlannedDevice],
                               state_dir: str | None) -> Any:
    """Serve the worker's ``/metrics`` (:class:`fleet.metrics.WorkerCollector` through
    :func:`fleet.scrape.serve_metrics`: bound now, prometheus-client imported at its first
    scrape, no aiohttp).  Returns the site (``cleanup()``), None when it cannot bind: the
    devices matter more."""
    from cpppo.server.hosting import WebBindError
    from fleet.scrape import WORKER_PORT, serve_metrics, worker_metrics_path

    def collector() -> Any:
        from fleet.metrics import WorkerCollector

        return WorkerCollector(worker, servers, devices)

    host, port = ("127.0.0.1", 0) if state_dir else (devices[0].host if devices else "0.0.0.0", WORKER_PORT)
    try:
        site = serve_metrics(collector, host, port, f"{worker}'s metrics")
    except WebBindError as exc:
        log.warning("%s", exc.strerror)
        return None
    if state_dir:
        path = worker_metrics_path(state_dir, worker)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"worker": worker, "pid": os.getpid(),
                                   "url": f"http://{site.host}:{site.port}/metrics"}))
        os.replace(tmp, path)
    return site


def _grow(worker: Worker, source: Path) -> None:
    """Re-read the spec file and host the devices added to it."""
    try:
        spec = json.loads(source.read_text())
        added = worker.grow(devices_from_json(spec))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: cannot re-read %s: %s", worker.name, source, exc)
        return
    if added:
        log.info("%s: adding %s", worker.name, ", ".join(added))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    if len(args) != 1:
        print("usage: python -m fleet.worker <worker-spec.json>", file=sys.stderr)
        return 2
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve_spec handles it: re-read the spec
    try:
        spec = json.loads(Path(args[0]).read_text())
    except (OSError, ValueError) as exc:
        print(f"fleet.worker: cannot read {args[0]}: {exc}", file=sys.stderr)
        return 2
    return run(spec, Path(args[0]))


def run(spec: dict[str, Any], source: Path | None = None) -> int:
    """Serve a worker spec until stopped (SIGTERM/SIGINT): raise the open-files limit, then run
    :func:`serve_spec` on uvloop where available.  Returns the exit status."""
    raise_fd_limit()
    collect_less()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve_spec(spec, source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
