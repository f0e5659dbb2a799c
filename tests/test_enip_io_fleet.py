"""Class 1 I/O adapters in the fleet: the ``io`` table of an ENIP [[device]] group (checked
with one-line errors naming file, table and key) and a real fleet whose adapters our scanner
exchanges I/O with."""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
from pathlib import Path

import pytest

from cpppo.enip.client.aclient import AsyncClient
from cpppo.enip.client.scanner import Scanner
from fleet.config import load
from fleet.plan import Plan, expand
from fleet.table import ConfigError
from tests.enip_io_support import io_host
from tests.fleet_support import CliFleet, until
from tests.support import free_port

OCTET = 150 + os.getpid() % 100


IO = 'io = { assemblies = ["100=in:Inputs", "150=out:Outputs", "198=input-only"] }'


def fleet_text(port: int, io: str = IO, extra: str = "") -> str:
    return f"""
[fleet]
name = "io{OCTET}"
address_pool = "127.78.{OCTET}.0/24"
health_interval = 0.5
health_timeout = 1.0
devices_per_worker = 2

[[device]]
kind = "enip"
count = 2
name = "rack{{n}}"
port = {port}
tags = ["Inputs=DINT[2]~counter(rate=200)", "Outputs=INT[2]"]
{io}
{extra}
"""


def _error(tmp_path: Path, text: str) -> str:
    (tmp_path / "fleet.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "fleet.toml")
    return str(info.value)


def test_io_table_round_trips(tmp_path):
    (tmp_path / "fleet.toml").write_text(fleet_text(44818, 'io = { assemblies = ["100=in:Inputs"], '
                                                           't_o_port = "source", rpi_range = "2-500", '
                                                           'lenient_sizes = true }'))
    plan = expand(load(tmp_path / "fleet.toml"))
    io = plan.devices[0].options.io
    assert io.assemblies == ("100=in:Inputs",) and io.t_o_port == "source" and io.rpi_range == "2-500"
    assert io.lenient_sizes
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))  # as the workers read it
    assert again.devices[0].options.io == io


@pytest.mark.parametrize("io, needle", [
    ('io = { assemblies = ["100=in:Nope"] }', "device[0].io: key 'assemblies': assembly 100: no tag 'Nope'"),
    ('io = { assemblies = ["100=inn:Inputs"] }', "device[0].io: key 'assemblies': bad assembly"),
    ("io = { assemblies = [] }", "device[0].io: key 'assemblies': an io table needs assemblies"),
    ('io = { assemblies = ["100=in:Inputs"], colour = 1 }', "device[0].io: key 'colour': unknown key"),
    ('io = { assemblies = ["100=in:Inputs"], t_o_port = "x" }', "key 't_o_port': bad T->O port"),
    ('io = { assemblies = ["100=in:Inputs"], rpi_range = "9-1" }', "key 'rpi_range': bad RPI range"),
    ('io = { assemblies = ["100=in:Inputs"], port = 0 }', "key 'port': must be 1-65535"),
    ('io = { assemblies = ["100=in:Inputs"], lenient_sizes = 1 }', "'lenient_sizes': must be true or false"),
    ('io = "100=in:Inputs"', "device[0]: key 'io': must be a table"),
])
def test_io_table_errors(tmp_path, io, needle):
    message = _error(tmp_path, fleet_text(44818, io))
    assert needle in message and "\n" not in message


def test_io_outputs_are_no_driven_tags(tmp_path):
    text = fleet_text(44818, 'io = { assemblies = ["100=in:Inputs", "150=out:Inputs"] }')
    message = _error(tmp_path, text)
    assert "device[0].io: key 'assemblies': assembly 150: tag 'Inputs' is driven by its behaviour" in message
    assert "\n" not in message


def test_io_needs_own_addresses(tmp_path):
    text = fleet_text(44818, extra='address = "127.78.1.1"\nport_step = 1')
    assert "need addresses of their own" in _error(tmp_path, text)


@pytest.mark.slow
def test_fleet_of_adapters(tmp_path):
    fleet = CliFleet(tmp_path, fleet_text(free_port(f"127.78.{OCTET}.1")))
    try:
        fleet.cli("up")
        until(fleet.all_healthy, what="all healthy")
        local = io_host()

        async def exchange(device, outputs: tuple[int, int]) -> tuple[list, Scanner, list]:
            """Inputs until the behaviour moved them twice; then the outputs as a tag client reads them."""
            counts: list[tuple[int, int]] = []
            async with Scanner(device.host, device.port, inputs=(100, 8), outputs=(150, 4), rpi=0.01,
                               io_address=(local, 0), multiplier=5) as scanner:
                scanner.output = struct.pack("<hh", *outputs)
                async for packet in scanner:
                    value = struct.unpack("<ii", packet.data)
                    if not counts or value != counts[-1]:
                        counts.append(value)
                    if len(counts) >= 3 or scanner.received >= 3000:
                        break
                async with AsyncClient(device.host, device.port, timeout=10) as client:
                    read = await client.read("Outputs[0-1]")
            if scanner.error:
                raise AssertionError(scanner.error)
            return counts, scanner, read

        for n, device in enumerate(fleet.plan.devices):
            counts, scanner, read = asyncio.run(exchange(device, (3 + n, -4)))
            assert len(counts) >= 3 and counts == sorted(counts)  # the counter behaviour drives them
            assert scanner.missing == 0 and read == [3 + n, -4]  # the scanner's outputs, read over TCP
    finally:
        fleet.cli("down")


def test_readme_io_table_validates(tmp_path):
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = re.search(r"^## Implicit I/O.*?\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    block = re.search(r"^```toml\n(.*?)^```", section, re.S | re.M).group(1)
    (tmp_path / "fleet.toml").write_text(f'[fleet]\nname = "readme"\naddress_pool = "127.78.{OCTET}.0/24"\n'
                                         + block)
    plan = expand(load(tmp_path / "fleet.toml"))
    assert len(plan.devices) == 100 and plan.devices[0].options.io.assemblies[0] == "100=in:Inputs,Status"


@pytest.mark.slow
def test_io_figures_in_status_json_and_metrics(tmp_path):
    """Per adapter: open I/O connections, packets in and out, timeouts, in ``status --json``
    and in the poller's /metrics (re-emitted from the worker's), while a scanner exchanges
    I/O with one adapter and after it falls silent."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    fleet = CliFleet(tmp_path, fleet_text(free_port(f"127.78.{OCTET}.1")))
    first, second = (d.name for d in fleet.plan.devices)

    def io() -> dict[str, dict]:
        return {name: d["io"] for name, d in fleet.devices().items()}

    def metrics() -> dict[tuple[str, ...], float]:
        with urllib.request.urlopen(fleet.status()["metrics"], timeout=10) as answer:
            text = answer.read().decode()
        return {(s.name, *sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
                for s in f.samples if s.name.startswith("cpppo_fleet_device_io_")}

    try:
        fleet.cli("up")
        until(fleet.all_healthy, what="all healthy")
        assert io()[first] == io()[second] == {"connections": 0, "packets_in": 0, "packets_out": 0,
                                               "packets_per_second_in": 0, "packets_per_second_out": 0,
                                               "timeouts": 0, "refused": 0, "missing": 0, "late": 0,
                                               "dropped": 0}
        device = fleet.plan.devices[0]

        async def exchange() -> tuple[dict, dict, str]:
            # multiplier 5: x128 RPI, so a loaded machine does not time the connection out early
            async with Scanner(device.host, device.port, inputs=(100, 8), outputs=(150, 4), rpi=0.01,
                               io_address=(io_host(), 0), multiplier=5) as scanner:
                async for _packet in scanner:
                    if scanner.received >= 20:
                        break
                # packets per second: over the adapter's samples of its totals (one a second)
                await asyncio.to_thread(until, lambda: io()[first]["packets_per_second_out"] > 0, 30,
                                        "a packet rate")
                during = await asyncio.to_thread(io)
                table = await asyncio.to_thread(fleet.cli, "status")
                # the poller re-emits what it last scraped from the workers (every interval)
                out = ("cpppo_fleet_device_io_packets_total", ("device", first), ("direction", "out"),
                       ("worker", device.worker))
                rate = ("cpppo_fleet_device_io_packets_per_second", ("device", first), ("direction", "in"),
                        ("worker", device.worker))

                def scraped_enough() -> bool:
                    seen = metrics()
                    return seen.get(out, 0) >= 20 and seen.get(rate, 0) > 0

                await asyncio.to_thread(until, scraped_enough, 30, "scraped packets")
                scraped = await asyncio.to_thread(metrics)
                scanner.producing = False  # silent: the adapter times the connection out
                await asyncio.to_thread(until, lambda: io()[first]["timeouts"] == 1, 20, "the timeout")
            return during, scraped, table

        during, scraped, table = asyncio.run(exchange())
        rows = {line.split()[1]: line for line in table.splitlines()
                if line.split()[1:2] in ([first], [second])}  # "│ rack0 │ enip │ ..."
        assert re.search(r" 1 conn [1-9]\d*/s \d+ late \d+ miss ", rows[first]), table  # the I/O column
        assert re.search(r" 0 conn 0/s 0 late 0 miss ", rows[second]), table
        assert during[first]["connections"] == 1 and during[second]["connections"] == 0
        assert during[first]["packets_in"] >= 20 and during[first]["packets_out"] >= 20
        assert during[first]["packets_per_second_in"] > 0 and during[second]["packets_per_second_out"] == 0
        worker = ("worker", device.worker)
        assert scraped[("cpppo_fleet_device_io_packets_per_second", ("device", first), ("direction", "in"),
                        worker)] > 0
        assert scraped[("cpppo_fleet_device_io_connections", ("device", first), worker)] == 1
        assert scraped[("cpppo_fleet_device_io_packets_total", ("device", first), ("direction", "out"),
                        worker)] >= 20
        after = io()[first]
        assert after["connections"] == 0 and after["timeouts"] == 1 and after["packets_in"] >= 20
    finally:
        fleet.cli("down")
