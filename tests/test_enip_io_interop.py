"""Implicit I/O against the third-party ``cm-ethernetip`` (its own virtualenv, tests/cmeip.py):
its scanner with our adapter and our scanner with its adapter, data both ways, the RPI kept,
timeout on silence and reconnection after a Forward Close.

Where cm-ethernetip 0.1.0 differs from the ODVA specification (we follow the specification;
the adapter tests below turn on the two compatibility settings it needs):

- its scanner's Forward Open connection sizes leave out the 2-byte CIP sequence count
  (O->T 4 + data, T->O data), while its packets carry it; our adapter answers such a Forward
  Open with 0x0109 unless ``IOPolicy(lenient_sizes=True)`` (``enip_server --lenient-sizes``,
  the fleet's ``io.lenient_sizes``);
- its scanner receives T->O data on an ephemeral port and names it nowhere (no T->O Sockaddr
  Info item), so an adapter sending to port 2222 as ODVA says is never heard; ours does with
  ``IOPolicy(t_o_port="source")`` (``enip_server --t-o-port source``, ``io.t_o_port = "source"``);
- its adapter answers an unknown assembly with 0x0116 (revision mismatch) rather than 0x0117,
  and sends its first T->O packets to the scanner's TCP address at 2222 before it learns the
  UDP source of the O->T data.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import time

import pytest

from cpppo.enip.client.aclient import AsyncClient
from cpppo.enip.client.scanner import Scanner
from tests import cmeip
from tests.enip_io_support import adapter, io_host

pytestmark = pytest.mark.interop

TAGS = ["Inputs=DINT[2]", "Outputs=DINT", "Setup=INT"]
ASSEMBLIES = ["100=in:Inputs", "150=out:Outputs", "151=config"]


@pytest.fixture(scope="module")
def cm_python():
    try:
        return cmeip.cm_python()
    except Exception as exc:  # pragma: no cover - only without PyPI
        import os
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot build the cm-ethernetip virtualenv: {exc}")


def _peer(cm_python, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(cm_python), "-I", str(cmeip.PEER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _lines(proc: subprocess.Popen, until, limit: float = 20.0) -> list[dict]:
    """Read the peer's JSON lines until ``until(line)`` is true (or it exits / the limit)."""
    seen = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        text = proc.stdout.readline()
        if not text:
            break
        line = json.loads(text)
        seen.append(line)
        if until(line):
            return seen
    err = proc.stderr.read() if proc.poll() is not None else ""
    raise AssertionError(f"peer did not say it: {seen[-5:]} {err}")


def _wait(predicate, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_cm_scanner_with_our_adapter(cm_python):
    host = io_host()
    with adapter(TAGS, ASSEMBLIES, host, t_o_port="source", lenient_sizes=True) as ours:
        ours.call(lambda: ours.device.tag("Inputs").attribute.__setitem__(slice(0, 2), [11, -22]))
        proc = _peer(cm_python, "scanner", host, "44818", "1.0", "2", "10000", "2a000000")
        try:
            expected = struct.pack("<ii", 11, -22).hex()
            for cycle in (0, 1):  # the second cycle reconnects after the first's Forward Close
                lines = _lines(proc, lambda x, c=cycle: x.get("cycle") == c and x.get("received", 0) >= 20)
                assert lines[-1]["inputs"] == expected
                _wait(lambda: ours.call(lambda: ours.device.tag("Outputs").attribute[0]) == 42)
                started = time.monotonic()
                first = ours.status()["connections"][0]
                time.sleep(0.5)
                later = ours.status()["connections"][0]
                elapsed = time.monotonic() - started
                assert first["kind"] == "owner" and later["o_t"] == first["o_t"]
                rate = (later["received"] - first["received"]) / elapsed  # O->T packets/s at a 10 ms RPI
                assert 30 < rate < 150, rate
                sent = (later["sent"] - first["sent"]) / elapsed
                assert 30 < sent < 150, sent
                _lines(proc, lambda x, c=cycle: x.get("cycle") == c and x.get("closed"))
                _wait(lambda: not ours.status()["connections"])
            assert proc.wait(10) == 0
        finally:
            proc.kill()
            proc.wait()
        # silence: a scanner that vanishes without a Forward Close times out (16 x 10 ms)
        proc = _peer(cm_python, "scanner", host, "44818", "30", "1", "10000", "01000000")
        try:
            _lines(proc, lambda x: x.get("received", 0) >= 5)
            proc.kill()
            _wait(lambda: not ours.status()["connections"])
            assert ours.call(lambda: ours.endpoint.manager.closed[-1].closed) == "timed out"
        finally:
            proc.kill()
            proc.wait()


def test_our_adapter_refuses_cm_sizes_by_default(cm_python):
    """Without lenient_sizes, cm-ethernetip's short connection sizes get 0x0109 (the spec)."""
    host = io_host()
    with adapter(TAGS, ASSEMBLIES, host, t_o_port="source") as ours:
        proc = _peer(cm_python, "scanner", host, "44818", "0.2", "1", "10000", "00000000")
        try:
            lines = _lines(proc, lambda x: "error" in x or x.get("opened"))
            assert "error" in lines[-1] and "0x01" in lines[-1]["error"]
            assert ours.status()["refused"] == 1
        finally:
            proc.kill()
            proc.wait()


def test_our_scanner_with_cm_adapter(cm_python):
    host, local = io_host(), io_host()
    proc = _peer(cm_python, "adapter", host, "44818", "2222", "30")
    try:
        _lines(proc, lambda x: x.get("ready"))

        async def exchange(output: bytes) -> tuple[list, Scanner]:
            packets = []
            async with Scanner(host, inputs=(100, 8), outputs=(150, 4), config=(151, b""), rpi=0.01,
                               io_address=(local, 0), keep=200) as scanner:
                scanner.output = output
                async for packet in scanner:
                    packets.append(packet)
                    if len(packets) >= 60:
                        break
            return packets, scanner

        for output in (b"\x2a\x00\x00\x00", b"\x07\x00\x00\x00"):  # open, close, open again
            packets, scanner = asyncio.run(exchange(output))
            counters = [struct.unpack_from("<i", p.data)[0] for p in packets]
            assert all(p.data[4:] == struct.pack("<i", 0x12345678) for p in packets)
            assert counters == sorted(counters) and counters[-1] > counters[0]
            intervals = sorted(scanner.intervals)
            assert 0.005 < intervals[len(intervals) // 2] < 0.03  # the median T->O interval ~ the 10 ms RPI
            _lines(proc, lambda x, o=output: x.get("outputs") == o.hex())
            _lines(proc, lambda x: x.get("connections") == 0)  # the Forward Close removed it

        async def silence() -> Scanner:
            async with Scanner(host, inputs=(100, 8), outputs=(150, 4), config=(151, b""), rpi=0.01,
                               io_address=(local, 0)) as scanner:
                count = 0
                async for _packet in scanner:
                    count += 1
                    if count == 5:
                        proc.kill()  # the adapter goes silent
            return scanner

        scanner = asyncio.run(silence())
        assert "0x0203" in scanner.error
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_cm_scanner_with_a_fleet_adapter(cm_python, tmp_path):
    """cm-ethernetip's scanner with an adapter of a fleet (the io table's ``t_o_port =
    "source"`` and ``lenient_sizes = true``): the counter behaviour's inputs reach it, its
    outputs land in the tag, and the fleet's status counts the connection."""
    from tests.fleet_support import CliFleet, until
    from tests.support import free_port

    octet = 150 + (os.getpid() + 37) % 100
    port = free_port(f"127.79.{octet}.1")
    fleet = CliFleet(tmp_path, f"""
[fleet]
name = "cmio{octet}"
address_pool = "127.79.{octet}.0/24"
health_interval = 0.5

[[device]]
kind = "enip"
count = 1
name = "cmrack"
port = {port}
tags = ["Inputs=DINT[2]~counter(rate=100)", "Outputs=DINT"]
[device.io]
assemblies = ["100=in:Inputs", "150=out:Outputs", "151=config"]
t_o_port = "source"
lenient_sizes = true
""")
    try:
        fleet.cli("up")
        until(fleet.all_healthy, what="all healthy")
        device = fleet.plan.devices[0]
        proc = _peer(cm_python, "scanner", device.host, str(device.port), "30", "1", "10000", "2a000000")
        try:
            seen = set()

            def moved(line: dict) -> bool:
                if "inputs" in line and line.get("received"):
                    seen.add(line["inputs"])
                return "error" in line or len(seen) >= 4

            assert "error" not in _lines(proc, moved)[-1]
            counts = [struct.unpack("<ii", bytes.fromhex(x))[0] for x in seen]
            assert len(counts) >= 4 and max(counts) > 0  # inputs the behaviour moves

            def connected() -> bool:
                return (fleet.devices()["cmrack"]["io"] or {}).get("connections") == 1

            until(connected, 30, "the connection in status")

            async def outputs() -> int:
                async with AsyncClient(device.host, device.port, timeout=10) as client:
                    return await client.read("Outputs")

            until(lambda: asyncio.run(outputs()) == 42, 30, "the scanner's outputs in the tag")
        finally:
            proc.kill()
            proc.wait()
        until(lambda: fleet.devices()["cmrack"]["io"]["timeouts"] == 1, 30, "the silent scanner's timeout")
    finally:
        fleet.cli("down")
