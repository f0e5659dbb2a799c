"""Polling devices for health: one sweep of a list of devices with bounded concurrency,
keeping one client per device open from one sweep to the next (through timed-out polls too;
a dropped or refused one is reopened on the next sweep), so a steady fleet costs one request per
device per sweep.  ENIP devices answer a List Identity when the connection opens (which must
match the plan's identity at every poll) and a tag read at every poll; Modbus devices a
register read.  :mod:`fleet.health` runs these sweeps on a schedule, supervised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fleet.kinds import KINDS, IdentityMismatch
from fleet.plan import PlannedDevice
from fleet.store import HealthResult

log = logging.getLogger("fleet.health")  # the health poller's log, where its sweeps run


def describe(exc: BaseException, timeout: float) -> str:
    """One line for a failed poll."""
    if isinstance(exc, IdentityMismatch):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return str(exc).splitlines()[0] if str(exc) else f"no answer within {timeout:g} s"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def offset(name: str) -> float:
    """A device's stable place in the health interval, in [0, 1): the same in every sweep and
    every poller process (a hash of its name, not Python's salted ``hash``).

    >>> offset("line001") == offset("line001"), 0 <= offset("x") < 1
    (True, True)
    """
    return zlib.crc32(name.encode()) / 2**32


class Poller:
    """Polls devices, keeping one client per device open between sweeps."""

    def __init__(self, timeout: float = 2.0, concurrency: int = 200, persistent: bool = True,
                 control: Path | None = None) -> None:
        self.timeout = timeout
        self.concurrency = concurrency
        self.persistent = persistent
        self.control = control  # the fleet's control folder: a client that asks the worker is told it
        self.clients: dict[str, Any] = {}
        self.opening: dict[str, asyncio.Task] = {}  # connections being set up, across polls

    async def _client(self, device: PlannedDevice) -> Any:
        """A client for a device that has none connected (:meth:`_check` uses a connected one
        as it is).  Setting one up (an ENIP connect, Register Session and List Identity) goes
        on past the poll's timeout, each step within the client's own: the next poll waits for
        the same setup instead of starting over, so a device whose setup takes longer than one
        poll's timeout (a starved machine) is connected all the same."""
        if device.name in self.clients:
            await self._drop(device.name)  # closed by the device while idle: a new one, this poll
        opening = self.opening.get(device.name)
        if opening is None:
            client = KINDS[device.kind].client(device.host, device.port, device.options, self.timeout)
            if hasattr(client, "locate"):  # its health is its worker's report (fleet.rtu.PortReport)
                client.locate(self.control, device.worker)
            opening = self.opening[device.name] = asyncio.ensure_future(_open(client, KINDS[device.kind]))
            opening.add_done_callback(_retrieved)
        try:
            client = await asyncio.shield(opening)
        except asyncio.CancelledError:
            if opening.cancelled():
                self.opening.pop(device.name, None)
            raise  # the poll's time is up; the setup goes on for the next poll
        except BaseException:
            self.opening.pop(device.name, None)
            raise
        self.opening.pop(device.name, None)
        self.clients[device.name] = client
        return client

    def _usable(self, name: str) -> bool:
        """Whether the device's client is still connected (or still being set up) after a poll
        timed out: it is kept (a late reply is skipped), so a slow poll costs no reconnect.  On
        a starved machine (a fair share of a few percent of a core each) dropping it made the
        next poll pay a connect, a Register Session and a List Identity more, four round trips
        in one timeout, so timeouts bred timeouts (issue 20)."""
        opening = self.opening.get(name)
        return (opening is not None and not opening.done()) or bool(
            getattr(self.clients.get(name), "connected", False))

    async def _drop(self, name: str) -> None:
        opening = self.opening.pop(name, None)
        if opening is not None:
            opening.cancel()
        client = self.clients.pop(name, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), 1.0)

    async def _check(self, device: PlannedDevice) -> None:
        kind = KINDS[device.kind]
        client = self.clients.get(device.name)
        if client is None or not getattr(client, "connected", True):
            client = await self._client(device)  # (re)connect, or wait for the setup under way
        await kind.check(client, device.options, device.identity_dict)

    async def poll(self, device: PlannedDevice) -> HealthResult:
        """Poll one device (never raises)."""
        begun = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                await self._check(device)
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) and self._usable(device.name)):
                await self._drop(device.name)
            return HealthResult(device.name, False, None, describe(exc, self.timeout), time.time())
        if not self.persistent:
            await self._drop(device.name)
        return HealthResult(device.name, True, time.monotonic() - begun, None, time.time())

    async def sweep(self, devices: Iterable[PlannedDevice], spread: float = 0.0,
                    on_result: Callable[[HealthResult], None] | None = None) -> list[HealthResult]:
        """Poll every device once, at most ``concurrency`` at a time; results in plan order.
        ``spread``: start each device's poll at its own stable offset within that many seconds
        (:func:`offset`), so polls do not queue behind each other and a latency is the
        device's own; ``on_result`` is called as each poll ends."""
        limit = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        begun = loop.time()
        devices = list(devices)
        results: dict[str, HealthResult] = {}

        async def bounded(device: PlannedDevice) -> None:
            if spread > 0:
                await asyncio.sleep(max(0.0, begun + offset(device.name) * spread - loop.time()))
            async with limit:
                result = results[device.name] = await self.poll(device)
            if on_result is not None:
                on_result(result)

        async def in_turn(turns: Iterable[PlannedDevice]) -> None:
            """Devices polled one after the other: a wire's (a serial line: one poll at a time,
            each with its own timeout, so a silent unit does not make the units waiting behind
            it late), or from the queue all the others are taken from."""
            for device in turns:
                await bounded(device)

        def ordered(group: list[PlannedDevice]) -> list[PlannedDevice]:
            return sorted(group, key=lambda d: offset(d.name)) if spread > 0 else group

        wires: dict[str, list[PlannedDevice]] = {}
        alone = []
        for device in devices:
            wire = KINDS[device.kind].wire(device)
            (alone if wire is None else wires.setdefault(wire, [])).append(device)
        # the devices with connections of their own: ``concurrency`` pollers taking them in turn
        # from one queue (in plan order, or in offset order when spread), each waiting for its
        # next device's offset -- the order a task per device behind the semaphore starts them
        # in, without a task and a semaphore waiter per device
        queue = iter(ordered(alone))
        await asyncio.gather(*(in_turn(queue) for _ in range(min(self.concurrency, len(alone)))),
                             *(in_turn(ordered(w)) for w in wires.values()))
        return [results[d.name] for d in devices]

    async def retain(self, names: Iterable[str]) -> None:
        """Close and forget the clients (and setups under way) of every device not in ``names``:
        a new plan without them (a fleet shrunk, a device renamed) leaves no connection open."""
        keep = set(names)
        gone = [name for name in {*self.clients, *self.opening} if name not in keep]
        opening = [self.opening[name] for name in gone if name in self.opening]
        await asyncio.gather(*(self._drop(name) for name in gone))
        await asyncio.gather(*opening, return_exceptions=True)
        if gone:
            log.info("closed the connections of %d devices no longer in the plan", len(gone))

    async def close(self) -> None:
        opening = list(self.opening.values())
        await asyncio.gather(*(self._drop(name) for name in {*self.clients, *self.opening}))
        await asyncio.gather(*opening, return_exceptions=True)  # cancelled: their sockets closed


async def _open(client: Any, kind: Any) -> Any:
    """Connect ``client`` and ask what its ``kind`` asks once a connection (each step within
    the client's own timeout); closed again if that fails."""
    try:
        await kind.open(client)
    except BaseException:  # connected but not set up (a timeout, say): close it, or its socket
        with contextlib.suppress(Exception, asyncio.CancelledError):  # stays open until collected
            await client.__aexit__(None, None, None)
        raise
    return client


def _retrieved(task: asyncio.Task) -> None:
    """A setup nobody waits for any more (its device no longer polled) fails quietly."""
    if not task.cancelled():
        task.exception()


async def sweep_once(devices: Iterable[PlannedDevice], timeout: float,
                     concurrency: int, control: Path | None = None) -> list[HealthResult]:
    """One sweep with fresh connections (for ``cpppo-fleet poll`` and ``up``)."""
    poller = Poller(timeout, concurrency, persistent=False, control=control)
    try:
        return await poller.sweep(devices)
    finally:
        await poller.close()


def run_sweep(devices: Iterable[PlannedDevice], timeout: float, concurrency: int,
              control: Path | None = None) -> list[HealthResult]:
    """:func:`sweep_once` from synchronous code, on uvloop when available."""
    from cpppo.server.hosting import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(sweep_once(list(devices), timeout, concurrency, control))
