"""Health polling: every device, every interval, with bounded concurrency.

ENIP devices answer a List Identity (which must match the plan's identity) and a tag read;
Modbus devices a register read.  Connections are kept open from one sweep to the next (a
dropped one is reopened on the next sweep), so a steady fleet costs a few requests per device
per interval.  Results go to the state folder's SQLite store (``fleet.store``).

Run as ``python -m fleet.health <state-dir>``: the process backend supervises it as the
``health`` program; it follows ``plan.json`` there as ``up`` rewrites it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fleet.plan import Plan, PlannedDevice
from fleet.store import HealthResult, Store, StoreError, open_store

log = logging.getLogger("fleet.health")

# identity fields compared with the plan after a List Identity
CHECKED_IDENTITY = ("product_name", "serial_number", "vendor_id", "product_type", "product_code")
_MODBUS_READS = {
    "holding registers": "read_holding_registers", "input registers": "read_input_registers",
    "coils": "read_coils", "discrete inputs": "read_discrete_inputs",
}


class IdentityMismatch(Exception):
    """The device at the planned address answers List Identity as another device."""


def describe(exc: BaseException, timeout: float) -> str:
    """One line for a failed poll."""
    if isinstance(exc, IdentityMismatch):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return str(exc).splitlines()[0] if str(exc) else f"no answer within {timeout:g} s"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def enip_route(device: PlannedDevice) -> dict[str, Any]:
    """AsyncClient keywords that address ``device`` the way it expects (simple, or a route path).

    >>> from fleet.plan import PlannedDevice
    >>> enip_route(PlannedDevice("d", "enip", "h", 1, "w", 0, 1, (), (), route_path="1/2"))
    {'route_path': [{'port': 1, 'link': 2}]}
    """
    if device.simple or device.route_path is False:
        return {"simple": True}
    if isinstance(device.route_path, str):
        port, _, link = device.route_path.partition("/")
        return {"route_path": [{"port": int(port, 0), "link": int(link, 0) if link.isdigit() else link}]}
    return {}


class Poller:
    """Polls devices, keeping one client per device open between sweeps."""

    def __init__(self, timeout: float = 2.0, concurrency: int = 200, persistent: bool = True) -> None:
        self.timeout = timeout
        self.concurrency = concurrency
        self.persistent = persistent
        self.clients: dict[str, Any] = {}

    async def _client(self, device: PlannedDevice) -> Any:
        client = self.clients.get(device.name)
        if client is None:
            if device.kind == "modbus-rtu":
                from fleet.rtu_lines import health_client

                client = health_client(device, self.timeout)
            elif device.kind == "enip":
                from cpppo.server.enip.aclient import AsyncClient

                client = AsyncClient(device.host, device.port, timeout=self.timeout,
                                     **enip_route(device))
            else:
                from cpppo.modbus.aclient import AsyncModbusClient

                client = AsyncModbusClient(device.host, device.port, unit=device.unit_ids[0],
                                           timeout=self.timeout)
            await client.__aenter__()
            self.clients[device.name] = client
        return client

    async def _drop(self, name: str) -> None:
        client = self.clients.pop(name, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), 1.0)

    async def _check(self, device: PlannedDevice) -> None:
        client = await self._client(device)
        if device.kind == "enip":
            ident = await client.list_identity()
            for key in CHECKED_IDENTITY:
                want = device.identity_dict.get(key)
                if want is not None and ident.get(key) != want:
                    raise IdentityMismatch(f"identity {key} is {ident.get(key)!r}, the plan says {want!r} "
                                           "(another device at this address?)")
            await client.read(device.health_read)
        else:
            table, _, offset = device.health_read.partition(":")
            await getattr(client, _MODBUS_READS[table])(int(offset), 1)

    async def poll(self, device: PlannedDevice) -> HealthResult:
        """Poll one device (never raises)."""
        begun = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                await self._check(device)
        except Exception as exc:
            await self._drop(device.name)
            return HealthResult(device.name, False, None, describe(exc, self.timeout), time.time())
        if not self.persistent:
            await self._drop(device.name)
        return HealthResult(device.name, True, time.monotonic() - begun, None, time.time())

    async def sweep(self, devices: Iterable[PlannedDevice]) -> list[HealthResult]:
        """Poll every device once, at most ``concurrency`` at a time; results in plan order."""
        limit = asyncio.Semaphore(self.concurrency)

        async def bounded(device: PlannedDevice) -> HealthResult:
            async with limit:
                return await self.poll(device)

        return list(await asyncio.gather(*(bounded(d) for d in devices)))

    async def close(self) -> None:
        await asyncio.gather(*(self._drop(name) for name in list(self.clients)))


async def sweep_once(devices: Iterable[PlannedDevice], timeout: float,
                     concurrency: int) -> list[HealthResult]:
    """One sweep with fresh connections (for ``cpppo-fleet poll`` and ``up``)."""
    poller = Poller(timeout, concurrency, persistent=False)
    try:
        return await poller.sweep(devices)
    finally:
        await poller.close()


def run_sweep(devices: Iterable[PlannedDevice], timeout: float, concurrency: int) -> list[HealthResult]:
    """:func:`sweep_once` from synchronous code, on uvloop when available."""
    from cpppo.server.hosting import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(sweep_once(list(devices), timeout, concurrency))


class Schedule:
    """The supervised poller: a sweep every ``health_interval``, following plan.json."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.plan_path = self.state_dir / "plan.json"
        self.plan_mtime = 0.0
        self.plan: Plan | None = None
        self.stopping = asyncio.Event()

    def _reload(self) -> None:
        import json

        with contextlib.suppress(OSError, ValueError, KeyError):
            mtime = self.plan_path.stat().st_mtime
            if mtime != self.plan_mtime:
                self.plan = Plan.from_json(json.loads(self.plan_path.read_text()))
                self.plan_mtime = mtime
                log.info("following %d devices", len(self.plan.devices))

    async def run(self, max_sweeps: int | None = None) -> None:
        self._reload()
        if self.plan is None:
            raise SystemExit(f"fleet.health: no plan in {self.plan_path}")
        fleet = self.plan.fleet
        poller = Poller(fleet.health_timeout, fleet.health_concurrency)
        failing: set[str] = set()
        sweeps = 0
        store = open_store(self.database)
        try:
            while not self.stopping.is_set() and (max_sweeps is None or sweeps < max_sweeps):
                begun = time.monotonic()
                self._reload()
                results = await poller.sweep(self.plan.devices)
                store = self._record(store, results, fleet.health_retention)
                sweeps += 1
                now_failing = {r.device for r in results if not r.ok}
                for r in results:
                    if not r.ok and r.device not in failing:
                        log.warning("%s: down: %s", r.device, r.error)
                for name in sorted(failing - now_failing):
                    log.info("%s: healthy again", name)
                if now_failing != failing or sweeps == 1:
                    log.info("sweep %d: %d/%d healthy in %.2f s", sweeps, len(results) - len(now_failing),
                             len(results), time.monotonic() - begun)
                failing = now_failing
                pause = max(0.0, fleet.health_interval - (time.monotonic() - begun))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), pause)
        finally:
            store.close()
        await poller.close()

    @property
    def database(self) -> Path:
        return self.state_dir / "health.sqlite"

    def _record(self, store: Store, results: list[HealthResult], retention: int) -> Store:
        """Record a sweep; a database deleted, replaced or damaged under us is started afresh
        (``status`` reads the file at the path, not the one we have open)."""
        if store.replaced():
            log.warning("%s was deleted or replaced: starting a new one", self.database)
            store.close()
            store = open_store(self.database)
        try:
            store.record(results, retention)
        except (sqlite3.Error, StoreError) as exc:
            log.warning("%s: starting a new one", str(exc).splitlines()[0])
            store.close()
            store = open_store(self.database)
            store.record(results, retention)
        return store


def sweep_and_print(state_dir: Path) -> int:
    """``--once``: one sweep of the plan in ``state_dir``, a JSON line per device on stdout
    (usable from another network namespace); exit status 0 when every device answered."""
    import json

    plan = Plan.from_json(json.loads((state_dir / "plan.json").read_text()))
    results = run_sweep(plan.devices, plan.fleet.health_timeout, plan.fleet.health_concurrency)
    for r in results:
        print(json.dumps({"device": r.device, "ok": r.ok, "latency": r.latency, "error": r.error}))
    return 0 if all(r.ok for r in results) else 1


async def _main(state_dir: Path) -> None:
    schedule = Schedule(state_dir)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, schedule.stopping.set)
    import os

    with open_store(state_dir / "health.sqlite") as store:
        store.record_start("health", os.getpid())
    await schedule.run()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    once = args[:1] == ["--once"]
    args = args[1:] if once else args
    if len(args) != 1:
        print("usage: python -m fleet.health [--once] <state-dir>", file=sys.stderr)
        return 2
    from cpppo.server.hosting import new_event_loop
    from fleet.worker import raise_fd_limit

    raise_fd_limit()
    if once:
        return sweep_and_print(Path(args[0]))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_main(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
