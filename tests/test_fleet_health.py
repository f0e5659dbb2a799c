"""The health poller against devices served in this process, the SQLite store and the
per-device report (no supervisord here)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from fleet.backends.base import ProgramStatus
from fleet.config import parse
from fleet.plan import Plan, expand
from fleet.poller import Poller
from fleet.report import device_reports, summary
from fleet.states import DeviceState, ProcessState
from fleet.store import HealthResult, Store
from fleet.worker import Worker
from tests.support import free_port

OCTET = 150 + os.getpid() % 50


def small_plan(port: int) -> Plan:
    return expand(parse(f"""
[fleet]
name = "h"
address_pool = "127.77.{OCTET}.0/24"
health_timeout = 0.5
[[device]]
kind = "enip"
count = 2
name = "line{{n}}"
port = {port}
tags = ["SCADA=INT[10]"]
identity = {{ product_name = "L61 {{n}}", serial_number = "0x10{{n:02}}" }}
[[device]]
kind = "enip"
count = 1
name = "drive{{n}}"
port = {port}
simple = true
tags = ["V@0x93/3/10=REAL"]
[[device]]
kind = "modbus"
count = 2
name = "pump{{n}}"
port = {port}
registers = ["30001-30004=5"]
"""))


def test_poller_checks_identity_reads_and_reports_errors() -> None:
    port = free_port(f"127.77.{OCTET}.1")
    plan = small_plan(port)

    async def scenario() -> tuple[list, list, list]:
        worker = Worker("w000", list(plan.devices[:-1]))  # pump2 is never served
        assert await worker.start_pending() == []
        poller = Poller(timeout=0.5, concurrency=2)
        try:
            first = await poller.sweep(plan.devices)
            second = await poller.sweep(plan.devices)  # over the kept connections
            # line2 now claims another identity than the plan's

            wrong = plan.devices[1]._replace(identity=(("product_name", "something else"),))
            third = [await poller.poll(wrong)]
        finally:
            await poller.close()
            await worker.close()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    for results in (first, second):
        assert [r.device for r in results] == [d.name for d in plan.devices]
        assert [r.ok for r in results] == [True, True, True, True, False], results
        assert results[-1].error and "pump2" not in results[-1].error
        assert all(r.latency is not None and r.latency >= 0 for r in results[:-1])
    assert not third[0].ok and "identity product_name" in third[0].error


def test_store_retention_history_and_starts(tmp_path: Path) -> None:
    with Store(tmp_path / "h.sqlite") as store:
        for i in range(5):
            b_ok = i < 4
            b = HealthResult("b", b_ok, 0.002 if b_ok else None, None if b_ok else "boom", 100.0 + i)
            store.record([HealthResult("a", True, 0.001 * (i + 1), None, 100.0 + i), b], retention=3)
        history = store.history(["a", "b", "c"])
        assert history["a"].latencies == pytest.approx((0.003, 0.004, 0.005))
        assert history["b"].last.error == "boom" and not history["b"].last.ok
        assert history["c"].last is None
        store.record_start("w000", 11)
        store.record_start("w000", 12)
        assert [pid for pid, _ in store.starts()["w000"]] == [11, 12]
        store.forget_starts()
        assert store.starts() == {}


def test_store_percentiles_are_those_of_the_kept_latencies(tmp_path: Path) -> None:
    import math
    import random

    from fleet.store import percentile

    rng = random.Random(5)
    with Store(tmp_path / "h.sqlite") as store:
        kept: dict[str, list[float]] = {}
        for sweep in range(30):
            results = []
            for name in ("a", "b", "c"):
                ok = rng.random() > 0.3
                latency = rng.random() if ok else None
                results.append(HealthResult(name, ok, latency, None if ok else "down", 100.0 + sweep))
                kept.setdefault(name, []).append(latency if ok else math.nan)
            store.record(results, retention=7)
        rows = {d: (p50, p99) for d, p50, p99 in store.db.execute("SELECT device, p50, p99 FROM health")}
        for name, values in kept.items():
            last = [v for v in values[-7:] if v == v]
            assert rows[name] == (percentile(last, 0.50), percentile(last, 0.99))


def test_store_ages_out_devices_no_longer_polled(tmp_path: Path) -> None:
    from fleet.store import HORIZON

    with Store(tmp_path / "h.sqlite") as store:
        store.record([HealthResult("gone", True, 0.001, None, 1.0)], retention=2)
        for i in range(HORIZON * 2):
            store.record([HealthResult("kept", True, 0.001, None, 2.0 + i)], retention=2)
            store.record([HealthResult("kept", True, 0.001, None, 2.0 + i)], retention=2, again=True)
        assert set(store.history()) == {"kept"}


def test_store_takes_over_an_older_versions_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "h.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE health (
        device TEXT PRIMARY KEY, sweep INTEGER NOT NULL, time REAL NOT NULL, ok INTEGER NOT NULL,
        latency REAL, error TEXT, p50 REAL, p99 REAL, ring BLOB NOT NULL) WITHOUT ROWID;
        CREATE INDEX health_sweep ON health (sweep);""")
    from array import array

    with db:
        db.execute("INSERT INTO health VALUES ('a', 1, 100.0, 1, 0.002, NULL, 0.002, 0.002, ?)",
                   (array("d", [0.002]).tobytes(),))
    db.close()
    with Store(path) as store:
        (sql,) = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'health'").fetchone()
        assert "WITHOUT ROWID" not in sql
        store.record([HealthResult("a", True, 0.004, None, 101.0)], retention=5)
        assert store.history()["a"].latencies == pytest.approx((0.002, 0.004))
        assert store.db.execute("SELECT COUNT(*) FROM health").fetchone() == (1,)


def test_report_combines_process_state_and_health() -> None:
    plan = small_plan(44818)
    names = [d.name for d in plan.devices]
    from fleet.store import DeviceHistory

    now = 1000.0
    history = {
        "line1": DeviceHistory(HealthResult("line1", True, 0.002, None, now - 1), (0.001, 0.002, 0.009)),
        "line2": DeviceHistory(HealthResult("line2", False, None, "no answer", now - 1), ()),
        "drive1": DeviceHistory(HealthResult("drive1", True, 0.002, None, now - 100), (0.002,)),
    }
    programs = {"w000": ProgramStatus("w000", ProcessState.RUNNING, 42, now - 50)}
    starts = {"w000": [(1, 0.0), (42, 1.0)]}
    reports = {r.name: r for r in device_reports(plan, plan, programs, history, starts, now)}
    assert reports["line1"].state is DeviceState.HEALTHY and reports["line1"].restarts == 1
    assert reports["line1"].p50 == 0.002 and reports["line1"].p99 == 0.009
    assert reports["line2"].state is DeviceState.DOWN and reports["line2"].error == "no answer"
    assert reports["drive1"].state is DeviceState.STARTING  # its last poll predates the worker's start
    assert reports["pump1"].state is DeviceState.STARTING
    assert set(reports) == set(names)
    assert summary(list(reports.values())) == "1 healthy / 5 total, 1 down, 3 starting"
    stopped = device_reports(plan, None, {}, history, {}, now)
    assert {r.state for r in stopped} == {DeviceState.STOPPED}


def test_up_waits_on_the_pollers_results_since_it_asked(tmp_path: Path) -> None:
    """``up`` reads the supervised poller's verdict: a result from before it asked does not
    count, a device its worker cannot serve fails with the worker's reason, and an excused
    device (misbehaving on purpose) is not waited for."""
    from fleet.health import request_sweep, wait_healthy

    plan = small_plan(44818)  # line1, line2, drive1, pump1, pump2, all on w000
    asked = request_sweep(tmp_path)
    assert (tmp_path / "sweep.request").read_text().strip() == str(asked)
    database = tmp_path / "health.sqlite"
    with Store(database) as store:
        store.record([HealthResult("line1", True, 0.001, None, asked + 1),
                      HealthResult("line2", True, 0.001, None, asked - 1),
                      HealthResult("drive1", False, None, "no answer", asked + 1)], retention=5)
        store.record_serve_errors("w000", 7, {"pump1": "cannot serve at x: taken"})
    seen: list[tuple[int, int]] = []
    healthy, failing = wait_healthy(database, plan.devices, asked, 0.0, lambda: {"w000": 7},
                                    lambda done, total, what: seen.append((done, total)),
                                    excused=lambda: {"pump2"})
    assert healthy == 2 and seen[-1] == (2, 5)  # line1, and pump2 excused
    assert {r.device: r.error for r in failing} == {"line2": "no health result yet", "drive1": "no answer",
                                                     "pump1": "cannot serve at x: taken"}


def test_up_counts_the_healthy_between_looks_at_their_names(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Between looks at which devices are healthy, ``up``'s wait only counts them (cheap at
    100,000) and looks again once the count says all may be; its progress follows the count."""
    import threading

    import fleet.health
    from fleet.health import request_sweep, wait_healthy

    monkeypatch.setattr(fleet.health, "QUICK", 0.02)
    plan = small_plan(44818)  # five devices on w000
    asked = request_sweep(tmp_path)
    database = tmp_path / "health.sqlite"
    with Store(database) as store:
        store.record([HealthResult("other", True, 0.001, None, asked + 1)], retention=5)  # not in the plan
    looks: list[int] = []
    real_ok_since = Store.ok_since

    def ok_since(self, since):
        looks.append(1)
        return real_ok_since(self, since)

    monkeypatch.setattr(Store, "ok_since", ok_since)
    names = [d.name for d in plan.devices]

    def feed() -> None:  # a device healthy every tenth of a second
        for name in names:
            time.sleep(0.1)
            with Store(database) as store:
                store.record([HealthResult(name, True, 0.001, None, time.time())], retention=5, again=True)

    feeder = threading.Thread(target=feed)
    feeder.start()
    seen: list[int] = []
    try:
        healthy, failing = wait_healthy(database, plan.devices, asked, 10.0, lambda: {"w000": 7},
                                        lambda done, total, what: seen.append(done))
    finally:
        feeder.join()
    assert (healthy, failing) == (5, [])
    assert seen == sorted(seen) and seen[-1] == 5 and len(set(seen)) >= 4  # counted as they came
    assert len(looks) <= 3  # the first look, the one the count asked for (and one more at most)
    assert len(seen) > 2 * len(looks)


def mixed_plan(port: int, count: int) -> Plan:
    return expand(parse(mixed_plan_text(port, count)))


def mixed_plan_text(port: int, count: int) -> str:
    return f"""
[fleet]
name = "slow"
address_pool = "127.77.{OCTET}.0/24"
[[device]]
kind = "enip"
count = {count}
name = "plc{{n}}"
port = {port}
tags = ["SCADA=INT[10]"]
identity = {{ product_name = "L61 {{n}}", serial_number = "0x20{{n:02}}" }}
[[device]]
kind = "modbus"
count = {count}
name = "mb{{n}}"
port = {port}
registers = ["40001-40010=7"]
"""


def test_a_timed_out_poll_keeps_its_connection_and_the_late_reply_is_skipped(monkeypatch) -> None:
    """Issue 20: on a starved machine a slow device must not cost a reconnect (connect,
    Register Session, List Identity: 4 round trips and three times the CPU of a poll), or
    timeouts breed timeouts.  Every device answers late (latency fault beyond the timeout):
    the polls time out but keep their connections; once the devices are quick again the next
    polls skip the late replies and succeed on the same connections, and an ENIP device's
    identity is asked once a connection."""
    from cpppo.enip.client.aclient import AsyncClient
    from cpppo.faults import parse_fault

    asked = []
    identify = AsyncClient._identify  # each List Identity answered (with the connect, or later)

    def counted(self, *args, **kwargs):
        asked.append(self.host)
        return identify(self, *args, **kwargs)

    monkeypatch.setattr(AsyncClient, "_identify", counted)
    port = free_port(f"127.77.{OCTET}.1")
    plan = mixed_plan(port, 8)
    names = [d.name for d in plan.devices]

    async def scenario() -> tuple[list, list, list, dict, dict, list[int]]:
        worker = Worker("w000", list(plan.devices))
        assert await worker.start_pending() == []
        poller = Poller(timeout=0.3, concurrency=len(names))
        try:
            first = await poller.sweep(plan.devices)
            clients = dict(poller.clients)
            connections = [len(worker.pool)]
            for name in names:
                worker.faults[name].set(parse_fault("latency", "900ms"))
            slow = await poller.sweep(plan.devices)
            kept = {n: c for n, c in poller.clients.items() if c.connected}
            connections.append(len(worker.pool))
            for name in names:
                worker.faults[name].clear()
            await asyncio.sleep(1.0)  # the late replies are in the clients' buffers now
            again = await poller.sweep(plan.devices)
            connections.append(len(worker.pool))
            assert all(poller.clients[n] is clients[n] for n in names)
        finally:
            await poller.close()
            await worker.close()
        return first, slow, again, clients, kept, connections

    first, slow, again, clients, kept, connections = asyncio.run(scenario())
    assert [r.ok for r in first] == [True] * len(names), first
    assert not any(r.ok for r in slow) and all("within 0.3 s" in r.error for r in slow), slow
    assert kept.keys() == clients.keys() and all(kept[n] is clients[n] for n in names)
    assert [r.ok for r in again] == [True] * len(names), again
    assert connections == [len(names)] * 3  # no device was connected to twice
    assert sorted(asked) == sorted(d.host for d in plan.devices if d.kind == "enip")  # once each


def test_a_reply_cut_off_halfway_closes_the_enip_connection() -> None:
    """A request timed out after its reply's header but before its body leaves the stream out
    of step: that connection is closed, not kept."""
    from cpppo.enip.client.aclient import AsyncClient, ENIPTimeout
    from cpppo.enip.codec import encapsulation

    async def scenario() -> tuple[bool, bool]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readexactly(encapsulation.HEADER_SIZE)
            body = await reader.readexactly(encapsulation.peek_length(head))
            _, header, data = encapsulation.decode(head + body)
            writer.write(encapsulation.encode(header.command, data, session=7, context=header.context))
            head = await reader.readexactly(encapsulation.HEADER_SIZE)  # List Identity: half a reply
            _, header, _ = encapsulation.decode(head)
            writer.write(encapsulation.encode(header.command, b"\0" * 40, context=header.context)[:30])
            await reader.read()  # until the client goes

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            client = AsyncClient("127.0.0.1", port, timeout=0.3)
            await client.connect()
            registered = client.connected
            with pytest.raises(ENIPTimeout):
                await client.list_identity()
            return registered, client.connected
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == (True, False)


def test_a_connection_slower_to_set_up_than_a_poll_is_connected_across_polls() -> None:
    """Issue 20: every reply 0.9 s late, polls of 1.5 s: an ENIP setup (Register Session, List
    Identity) takes 1.8 s, longer than a poll; it goes on past the timed-out poll, and the next
    poll, one read of 0.9 s, succeeds.  Before, every poll started the setup over and the
    device was never seen healthy however often it was polled."""
    from cpppo.faults import parse_fault

    port = free_port(f"127.77.{OCTET}.1")
    plan = mixed_plan(port, 2)
    devices = [d for d in plan.devices if d.kind == "enip"]

    async def scenario() -> tuple[list[list[bool]], int]:
        worker = Worker("w000", devices)
        assert await worker.start_pending() == []
        for device in devices:
            worker.faults[device.name].set(parse_fault("latency", "900ms"))
        poller = Poller(timeout=1.5, concurrency=len(devices))
        sweeps = []
        try:
            for _ in range(4):
                sweeps.append([r.ok for r in await poller.sweep(devices)])
                if all(sweeps[-1]):
                    break
            connections = len(worker.pool)
        finally:
            await poller.close()
            await worker.close()
        return sweeps, connections

    sweeps, connections = asyncio.run(scenario())
    assert sweeps[0] == [False, False] and sweeps[-1] == [True, True], sweeps
    assert connections == len(devices)


def test_a_connection_the_device_closed_while_idle_is_replaced_within_the_poll() -> None:
    """A device that closes silent connections sooner than the next poll (its idle_timeout)
    is polled on a new connection, not reported down on the closed one."""
    port = free_port(f"127.77.{OCTET}.1")
    plan = expand(parse(mixed_plan_text(port, 2).replace('tags = ["SCADA=INT[10]"]',
                                                         'tags = ["SCADA=INT[10]"]\nidle_timeout = 0.3')
                        .replace('registers = ["40001-40010=7"]',
                                 'registers = ["40001-40010=7"]\nidle_timeout = 0.3')))

    async def scenario() -> tuple[list[bool], list[bool], bool]:
        worker = Worker("w000", list(plan.devices))
        assert await worker.start_pending() == []
        poller = Poller(timeout=2.0, concurrency=8)
        try:
            first = [r.ok for r in await poller.sweep(plan.devices)]
            clients = dict(poller.clients)
            await asyncio.sleep(1.0)  # every device closes its idle connection meanwhile
            closed = not any(c.connected for c in clients.values())
            second = [r.ok for r in await poller.sweep(plan.devices)]
        finally:
            await poller.close()
            await worker.close()
        return first, second, closed

    first, second, closed = asyncio.run(scenario())
    assert closed and first == second == [True] * len(plan.devices), (first, second, closed)


def test_a_big_fleets_devices_keep_idle_connections_past_the_health_interval() -> None:
    """The default interval grows with the fleet (200 s at 100,000 devices), past the ENIP
    server's 120 s idle timeout: unset, a device's idle_timeout outlasts 3 intervals."""
    from fleet.config import IDLE_INTERVALS

    def idle(count: int, extra: str = "", fleet: str = "") -> list:
        text = mixed_plan_text(44818, count).replace("[[device]]", f"{extra}\n[[device]]", 1)
        text = text.replace("[fleet]", f"[fleet]\n{fleet}").replace('/24"', '/8"')
        return [g.options.idle_timeout for g in parse(text).groups]

    assert idle(10) == [None, None]  # 5 s: the servers' defaults (120 s, 600 s) do
    assert idle(15_000) == [IDLE_INTERVALS * 60.0 + 2.0, None]  # 30,000 devices, 60 s: past ENIP's 120 s
    assert idle(10, fleet="health_interval = 250") == [752.0, 752.0]
    assert idle(30_000, fleet="health_interval = 30")[0] is None


def test_a_sweep_spreads_polls_at_each_devices_stable_offset() -> None:
    """With ``spread``, each device's poll starts no earlier than its own offset (a hash of its
    name) into the sweep, so polls go in offset order and do not queue behind each other; the
    same order every sweep.  Without, they all start at once, in plan order."""
    from fleet.poller import offset

    plan = expand(parse("""
[fleet]
name = "spread"
address_pool = "127.77.1.0/24"
[[device]]
kind = "enip"
count = 40
name = "plc{n:02}"
tags = ["SCADA=INT[10]"]
[[device]]
kind = "modbus"
count = 10
name = "pump{n}"
registers = ["40001-40010=0"]
"""))
    names = [d.name for d in plan.devices]

    class Recording(Poller):
        """Records when each poll starts (loop time) instead of polling."""

        def __init__(self) -> None:
            super().__init__(timeout=1.0, concurrency=200)
            self.starts: list[tuple[float, str]] = []

        async def poll(self, device):  # type: ignore[override]
            self.starts.append((asyncio.get_running_loop().time(), device.name))
            return HealthResult(device.name, True, 0.001, None, 0.0)

    async def sweep(spread: float) -> tuple[float, list[tuple[float, str]], list[str]]:
        poller = Recording()
        begun = asyncio.get_running_loop().time()
        results = await poller.sweep(plan.devices, spread)
        return begun, poller.starts, [r.device for r in results]

    spread = 0.5
    by_offset = sorted(names, key=offset)
    assert by_offset != names and offset(by_offset[-1]) - offset(by_offset[0]) > 0.5  # spread out
    for _ in range(2):  # stable: the same places every sweep
        begun, starts, results = asyncio.run(sweep(spread))
        assert results == names  # results in plan order, whatever the order of the polls
        assert [name for _t, name in starts] == by_offset
        assert all(when >= begun + offset(name) * spread - 0.01 for when, name in starts)
    _begun, starts, _results = asyncio.run(sweep(0.0))
    assert [name for _t, name in starts] == names


def pump_plan(folder: Path, name: str, interval: float, count: int, per_worker: int | None = None) -> Plan:
    """A fleet of ``count`` Modbus pumps (not served) with its plan.json in ``folder``: for the
    supervised poller's schedule, its polls replaced."""
    workers = f"devices_per_worker = {per_worker}\n" if per_worker else ""
    plan = expand(parse(f"""
[fleet]
name = "{name}"
address_pool = "127.77.{OCTET}.0/24"
health_interval = {interval}
health_timeout = 0.1
{workers}[[device]]
kind = "modbus"
count = {count}
name = "pump{{n}}"
registers = ["40001-40004"]
"""))
    (folder / "plan.json").write_text(plan.dumps())
    return plan


def test_the_supervised_poller_spreads_every_sweep_but_the_first_after_a_change(tmp_path: Path,
                                                                              monkeypatch) -> None:
    """The first sweep (``up`` waits on it) polls at once; the next ones, even while settling,
    are spread over the interval less the timeout."""
    from fleet.health import Schedule

    pump_plan(tmp_path, "sched", 0.3, 3)
    spreads: list[float] = []

    async def sweep(self, devices, spread=0.0, on_result=None):  # no devices to poll: all healthy
        spreads.append(spread)
        return [HealthResult(d.name, True, 0.001, None, 0.0) for d in devices]

    monkeypatch.setattr(Poller, "sweep", sweep)
    asyncio.run(Schedule(tmp_path).run(max_sweeps=3))
    assert spreads == [0.0, pytest.approx(0.2), pytest.approx(0.2)]


def test_a_worker_still_starting_is_known_until_it_has_tried_its_devices(tmp_path: Path) -> None:
    """``Store.starting``: a worker whose newest process has not yet been through its first
    attempt to serve (``record_serve_errors``, errors or none); a restart starts it again.  A
    program whose start the backend records (a container not reporting) is never starting."""
    import time

    with Store(tmp_path / "health.sqlite") as store:
        store.record_start("w000", 11, serving=True)
        store.record_start("w001", 12, serving=True)
        store.record_start("w002", 1)  # a container's start, recorded by the docker backend
        store.record_serve_errors("w001", 12, {"d": "cannot serve at x: taken"})
        assert store.starting(0.0) == {"w000"}
        store.record_serve_errors("w000", 11, {})
        assert store.starting(0.0) == set()
        store.record_start("w001", 13, serving=True)  # restarted: its new process has served nothing yet
        store.record_serve_errors("w001", 12, {})  # the old process's last word changes nothing
        assert store.starting(0.0) == {"w001"}
        assert store.starting(time.time() + 1) == set()  # started before then: not waited for
        store.forget_starts()
        assert store.starting(0.0) == set()


def test_after_a_change_the_devices_of_a_starting_worker_wait_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep after a change polls the devices of workers that serve theirs; those of a
    worker still starting (busy binding thousands of sockets: a poll would only time out and
    slow it) are polled while settling, as soon as it has tried them."""
    import time

    from fleet.health import Schedule

    plan = pump_plan(tmp_path, "starting", 1.0, 4, per_worker=2)
    first, second = plan.workers
    database = tmp_path / "health.sqlite"
    with Store(database) as store:
        store.record_start(first.name, 11, serving=True)
        store.record_start(second.name, 12, serving=True)
        store.record_serve_errors(second.name, 12, {})
    polled: list[list[str]] = []

    async def sweep(self, devices, spread=0.0, on_result=None):
        polled.append(sorted(d.name for d in devices))
        if len(polled) == 1:  # the first worker has bound its devices' sockets now
            with Store(database) as store:
                store.record_serve_errors(first.name, 11, {})
        return [HealthResult(d.name, True, 0.001, None, time.time()) for d in devices]

    monkeypatch.setattr(Poller, "sweep", sweep)
    asyncio.run(Schedule(tmp_path).run(max_sweeps=1))
    assert polled == [sorted(second.devices), sorted(first.devices)]


def test_settling_goes_on_while_devices_keep_turning_healthy(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After a change the devices not yet healthy are re-polled until SETTLE seconds pass
    without one turning healthy: a round of re-polls longer than SETTLE (thousands of first
    contacts on a loaded machine) does not leave the rest for the next sweep."""
    import fleet.health
    from fleet.health import Schedule

    plan = pump_plan(tmp_path, "settling", 60.0, 4)
    monkeypatch.setattr(fleet.health, "SETTLE", 0.3)
    monkeypatch.setattr(fleet.health, "QUICK", 0.05)
    schedule = Schedule(tmp_path)
    names = sorted(d.name for d in plan.devices)
    polled: list[list[str]] = []

    async def sweep(self, devices, spread=0.0, on_result=None):  # a device more healthy each round
        polled.append(sorted(d.name for d in devices))
        if len(polled) > 1:
            await asyncio.sleep(0.4)  # longer than SETTLE
        healthy = set(names[:len(polled) - 1])
        results = [HealthResult(d.name, d.name in healthy, 0.001, None if d.name in healthy else "no answer",
                                time.time()) for d in devices]
        if all(r.ok for r in results) and len(polled) > 1:
            schedule.stopping.set()
        return results

    monkeypatch.setattr(Poller, "sweep", sweep)

    async def run() -> None:
        await asyncio.wait_for(schedule.run(max_sweeps=1), 20)

    asyncio.run(run())
    assert polled == [names, names, names[1:], names[2:], names[3:]]


def test_a_new_plan_without_some_devices_closes_their_connections(tmp_path: Path) -> None:
    """The supervised poller takes a plan.json that drops devices: their connections are
    closed (the worker sees them go) and the poller keeps only the others'."""
    from dataclasses import replace

    from fleet.health import Schedule

    port = free_port(f"127.77.{OCTET}.1")
    text = mixed_plan_text(port, 2).replace('name = "slow"', 'name = "slow"\nhealth_interval = 0.3')
    plan = expand(parse(text))
    kept = tuple(d for d in plan.devices if d.name in ("plc1", "mb1"))
    smaller = replace(plan, devices=kept, digest="")
    (tmp_path / "plan.json").write_text(plan.dumps())

    async def connections(worker: Worker, count: int) -> int:
        for _ in range(100):  # at most 10 s
            if len(worker.pool) == count:
                break
            await asyncio.sleep(0.1)
        return len(worker.pool)

    async def scenario() -> tuple[int, int]:
        worker = Worker("w000", list(plan.devices))
        assert await worker.start_pending() == []
        schedule = Schedule(tmp_path)
        running = asyncio.ensure_future(schedule.run())
        try:
            before = await connections(worker, len(plan.devices))
            path = tmp_path / "plan.json"
            path.write_text(smaller.dumps())
            os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)  # seen as changed
            after = await connections(worker, len(kept))
        finally:
            schedule.stopping.set()
            await asyncio.wait_for(running, 10)
            await worker.close()
        return before, after

    assert asyncio.run(scenario()) == (4, 2)


def test_the_fleet_view_forgets_the_devices_a_new_plan_drops() -> None:
    """The fleet page's last results, sparkline latencies and histograms of devices a new plan
    no longer has are freed; the others' are kept."""
    from dataclasses import replace

    from fleet.metrics import Latencies
    from fleet.web.view import FleetView

    plan = mixed_plan(44818, 2)
    view = FleetView(plan, Latencies())
    for device in plan.devices:
        view.record(HealthResult(device.name, True, 0.01, None, 1.0))
    view.set_plan(replace(plan, devices=plan.devices[:1]))
    name = plan.devices[0].name
    assert list(view.last) == list(view.latencies) == list(view.histogram.counts) == [name]
    assert list(view.histogram.sums) == [name]


def test_a_poller_shard_other_than_the_first_keeps_only_its_own_devices(tmp_path: Path) -> None:
    """Shards 1.. of a sharded poller build only their own devices from plan.json (shard 0
    serves the fleet page and keeps the whole plan): the same devices they poll either way."""
    from fleet.health import Schedule

    plan = mixed_plan(44818, 5)
    (tmp_path / "plan.json").write_text(plan.dumps())
    schedules = [Schedule(tmp_path, (k, 3)) for k in range(3)]
    for schedule in schedules:
        schedule._changed()
    assert [s.mine for s in schedules] == [plan.devices[k::3] for k in range(3)]
    assert len(schedules[0].plan.devices) == len(plan.devices)
    assert [len(s.plan.devices) for s in schedules[1:]] == [len(plan.devices[k::3]) for k in (1, 2)]
    assert schedules[2].plan.fleet == plan.fleet
    assert {n for w in schedules[2].plan.workers for n in w.devices} == {d.name for d in plan.devices[2::3]}


def test_the_fleet_view_keeps_each_devices_last_latencies_oldest_first() -> None:
    from fleet.web.view import HISTORY, FleetView

    plan = mixed_plan(44818, 1)
    view = FleetView(plan)
    name = plan.devices[0].name
    for i in range(HISTORY + 5):
        view.record(HealthResult(name, True, i / 1000, None, float(i)))
    view.record(HealthResult(name, False, None, "down", 99.0))  # a failure adds no latency
    assert [round(v * 1000) for v in view.latencies[name]] == list(range(5, HISTORY + 5))
