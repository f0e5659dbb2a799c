"""The `cpppo.remote.plc_modbus` poller against our simulator and against a pymodbus server,
its behaviour while the PLC is offline, and the spec's modbus_sim / modbus_poll session."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from cpppo.modbus.device import ModbusDevice
from cpppo.remote.plc import PlcError, moving_loads
from cpppo.remote.plc_modbus import merge, poller_modbus, shatter
from tests.support import free_port, python_module, running
from tests.test_modbus_support import HOST, ServerThread, pymodbus_server, simulator


def eventually(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``probe`` until it returns something truthy (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


def test_merge_and_shatter():
    assert list(merge([(40001, 1), (40003, 1), (40010, 1)], reach=1)) == [(40001, 1), (40003, 1), (40010, 1)]
    assert list(merge([(40001, 1), (40003, 1), (40010, 1)], reach=2)) == [(40001, 3), (40010, 1)]
    assert list(merge([(40001, 1), (40200, 1)], reach=500)) == [(40001, 1), (40200, 1)]  # over 125
    assert list(merge([(9999, 1), (10001, 1)], reach=10)) == [(9999, 1), (10001, 1)]   # coils | inputs
    assert list(merge([(1, 1), (1500, 1)], reach=2000)) == [(1, 1500)]                  # bits: 2000
    assert list(merge([(n, 1) for n in range(40001, 40301)])) == [(40001, 125), (40126, 125), (40251, 50)]
    assert list(shatter(1, 5, 2)) == [(1, 2), (3, 2), (5, 1)]


def test_moving_loads_stay_fractions():
    loads = (0.0, 0.0, 0.0)
    for _ in range(100):
        loads = moving_loads(loads, 0.5, 1.0)
    assert 0.0 < loads[2] < loads[1] < loads[0] <= 0.5


@pytest.fixture
def sim():
    with simulator(["40001-40100=99", "1-16=0", "10001-10008=1", "30001-30010=5"]) as (_, server):
        yield server


@pytest.fixture
def make_poller():
    made = []

    def make(port: int, **kwds: Any) -> poller_modbus:
        p = poller_modbus("test", host=HOST, port=port, **{"rate": 0.05, "timeout": 1.0, **kwds})
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()
    for p in made:
        p.join(5)


def test_poll_read_write_against_our_simulator(sim, make_poller):
    p = make_poller(sim.port)
    assert p.read(40001) is None
    for number in (40001, 40002, 40010, 1, 10001, 30001):
        p.poll(number)
    assert eventually(lambda: p.read(40010)) == 99
    assert eventually(lambda: p.read(30001)) == 5
    assert p.read(1) == 0 and p.read(10001) == 1
    p.write(40001, 123)
    p.write(40002, [7, 8, 9])
    p.write(1, 1)
    assert sim.device.read(40001, 4) == [123, 7, 8, 9]
    assert eventually(lambda: p.read(40001) == 123 and p.read(1) == 1)
    assert eventually(lambda: p.read(40002) == 7)
    assert (40001, 10) in p.polling and not p.failing              # adjacent polls merged
    assert eventually(lambda: 0.0 < p.load[0] <= 1.0)
    assert all(0.0 <= load <= 1.0 for load in p.load)


def test_write_errors(sim, make_poller):
    p = make_poller(sim.port)
    with pytest.raises(ValueError, match="read-only"):
        p.write(30001, 1)
    with pytest.raises(PlcError, match="exception 2"):
        p.write(40500, 1)
    with pytest.raises(ValueError):
        p.poll(20000)
    with pytest.raises(ValueError):
        p.poll(40001, rate=0)
    p.poll(40001, rate=0.01)
    assert p.rate == 0.01
    p.poll(40001, rate=5)
    assert p.rate == 0.01                                           # only ever faster


def test_offline_plc_reads_none_then_reconnects(make_poller):
    port = free_port()
    p = make_poller(port)
    p.poll(40001)
    eventually(lambda: p.failing)
    assert p.read(40001) is None and not p.polling
    thread = ServerThread()
    try:
        thread.serve(ModbusDevice.from_specs(["40001=42"]), HOST, port)
        assert eventually(lambda: p.read(40001)) == 42               # reconnected after back-off
        thread.run(_close_all(thread))
        eventually(lambda: p.read(40001) is None)                   # offline again: None
        assert p.failing
    finally:
        thread.close()


async def _close_all(thread: ServerThread) -> None:
    for server in thread.servers:
        server.close()
        await server.wait_closed()


@pytest.mark.interop
def test_poller_against_a_pymodbus_server(make_poller):
    with pymodbus_server() as port:
        p = make_poller(port)
        p.poll(40001)
        p.poll(40005)
        assert eventually(lambda: p.read(40005)) == 99
        p.write(40005, 4321)
        assert eventually(lambda: p.read(40005) == 4321)


def test_spec_example_session():
    """modbus_sim -a :PORT 40001-40100=99; modbus_poll ... 40001-40010=0 40001-40100; then a
    second modbus_poll writes 40009=999 and the first logs the change."""
    port = free_port()
    python = sys.executable
    with running(python_module("cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}", "40001-40100=99",
                               python=python), listen=(HOST, port)) as sim:
        with running(python_module("cpppo.bin.modbus_poll", "-a", f"{HOST}:{port}", "-R", "0.2",
                                   "40001-40010=0", "40001-40100", python=python)) as first:
            lines: list[str] = []

            def seen(pattern: str) -> bool:
                while not any(re.search(pattern, line) for line in lines):
                    line = first.stdout.readline()
                    if not line:
                        return False
                    lines.append(line)
                return True
            assert seen(r"40100 ==\s+99 \(was: None\)")
            assert seen(r"40009 ==\s+0 \(was: None\)")
            with running(python_module("cpppo.bin.modbus_poll", "-a", f":{port}", "40009=999",
                                       python=python)) as second:
                assert seen(r"40009 ==\s+999 \(was: 0\)")
                assert second.poll() is None                          # still polling until stopped
        first_line = sim.stdout.readline()
    assert re.match(rf"Success; Started Modbus/TCP Simulator; PID = \d+; address = {HOST}:{port}", first_line)
    assert re.search(r"WARNING +40001 ==\s+0 \(was: None\)", "".join(lines))
