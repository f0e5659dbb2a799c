"""Connection limits as fleet.toml keys (per device group and per worker), and a worker's
devices capped together: idle connections to one device cannot exhaust the worker."""

from __future__ import annotations

import asyncio
import re
import shlex
import socket

import pytest

from fleet.config import ConfigError, parse
from fleet.plan import expand
from fleet.worker import Worker
from tests.support import ROOT, free_port, python_module, running

FLEET = """
[fleet]
name = "limits"
address_pool = "127.0.0.1-127.0.0.2"
worker_max_connections = {worker}

[[device]]
kind = "enip"
name = "plc"
port = {enip}
tags = ["SCADA=INT[10]"]
max_connections = 4
idle_timeout = 30
max_in_flight = 8

[[device]]
kind = "modbus"
name = "pump"
port = {modbus}
registers = ["40001-40010=7"]
idle_timeout = 0
"""


def fleet_text(worker: int = 0, enip: int = 44818, modbus: int = 1502) -> str:
    return FLEET.format(worker=worker, enip=enip, modbus=modbus)


def test_limits_are_read_per_device_group_and_per_worker():
    config = parse(fleet_text(worker=100))
    assert config.fleet.worker_max_connections == 100
    plc, pump = (group.options for group in config.groups)
    assert (plc.max_connections, plc.idle_timeout, plc.max_in_flight) == (4, 30.0, 8)
    assert (pump.max_connections, pump.idle_timeout, pump.max_in_flight) == (None, 0.0, None)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("max_connections", "0", "must be > 0, got 0"),
    ("max_in_flight", '"many"', "must be an integer, got 'many'"),
    ("idle_timeout", "-1", "must be >= 0, got -1"),
    ("worker_max_connections", "-5", "must be >= 0, got -5"),
])
def test_bad_limits_are_one_line_naming_the_key(key, value, message):
    text = fleet_text()
    table = "fleet" if key.startswith("worker") else "device[0]"
    old = next(line for line in text.splitlines() if line.startswith(f"{key} ="))
    with pytest.raises(ConfigError) as caught:
        parse(text.replace(old, f"{key} = {value}", 1))
    text = str(caught.value)
    assert "\n" not in text and table in text and key in text and message in text, text


def test_worker_serves_with_its_limits_and_caps_its_devices_together():
    enip, modbus = free_port(), free_port()
    plan = expand(parse(fleet_text(worker=6, enip=enip, modbus=modbus)))

    async def scenario() -> tuple[int, int, int, bytes]:
        worker = Worker("w", list(plan.devices), max_connections=6)
        await worker.start_pending()
        plc, pump = worker.servers["plc"], worker.servers["pump"]
        assert plc.settings.max_connections == 4 and plc.settings.idle_timeout == 30.0
        assert pump.settings.idle_timeout is None and pump.settings.max_connections == 256
        hosts = {d.name: d.host for d in plan.devices}
        idle = [await asyncio.open_connection(hosts["plc"], enip) for _ in range(6)]
        await asyncio.sleep(0.1)
        device_evictions = plc.evictions  # 6 to a device that takes 4
        idle += [await asyncio.open_connection(hosts["pump"], modbus) for _ in range(3)]
        reader, writer = await asyncio.open_connection(hosts["pump"], modbus)
        writer.write(bytes.fromhex("0001 0000 0006 01 03 0000 0001"))
        answer = await asyncio.wait_for(reader.readexactly(11), 10)
        for _, w in [*idle, (reader, writer)]:
            w.close()
        pool = worker.pool
        assert len(plc.sessions) == 2 and len(pump.connections) == 4
        await worker.close()
        return device_evictions, pool.evictions, len(pool), answer

    device_evictions, pool_evictions, left, answer = asyncio.run(scenario())
    assert device_evictions == 2
    assert pool_evictions == 2  # 4 plc + 4 pump connections into 6 seats: the 2 oldest idle plc ones
    assert answer[7:] == bytes.fromhex("03 02 0007")
    assert left <= 6


def test_worker_cap_never_exceeds_what_its_descriptors_allow():
    from fleet.worker import connection_cap

    assert connection_cap(0, 20, fd_limit=4096) == 4096 - 20 - 64  # 10 ENIP devices: TCP and UDP each
    assert connection_cap(100_000, 20, fd_limit=4096) == 4096 - 20 - 64
    assert connection_cap(50, 20, fd_limit=4096) == 50
    with socket.socket():  # a sanity check that the default reads this process's limit
        assert connection_cap(0, 0) > 16


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"^## Hostile clients and limits\n(.*?)(?=^## )", text, re.S | re.M).group(1)


def test_readme_limits_example_is_read_as_written():
    block = re.search(r"^```toml\n(.*?)^```", readme_section(), re.S | re.M).group(1)
    config = parse(block)
    assert config.fleet.worker_max_connections == 4000
    (group,) = config.groups
    options = group.options
    assert (options.max_connections, options.idle_timeout, options.max_in_flight) == (64, 60.0, 32)
    assert len(expand(config).devices) == 10


def test_readme_limits_commands_serve():
    block = re.search(r"^```sh\n(.*?)^```", readme_section(), re.S | re.M).group(1)
    modules = {"enip_server": "cpppo.server.enip", "modbus_sim": "cpppo.bin.modbus_sim"}
    for line in block.splitlines():
        command, *words = shlex.split(line, comments=True)
        if "-a" in words:  # an address of the test's own
            del words[words.index("-a"):words.index("-a") + 2]
        port = free_port()
        with running(python_module(modules[command], "-a", f"127.0.0.1:{port}", *words),
                     listen=("127.0.0.1", port)) as proc:
            assert proc.poll() is None, line
