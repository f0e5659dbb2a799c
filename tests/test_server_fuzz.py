"""Fuzzing the live ENIP and Modbus servers (a short run of ``tests/live_fuzz.py``; the long
one is ``benchmarks/fuzz_servers.py``): mutated valid frames over many connections, a
well-behaved probe between batches answered right every time, every reply well framed."""

from __future__ import annotations

from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from tests.live_fuzz import fuzz
from tests.test_modbus_support import HOST, simulator

SECONDS = 5.0  # each server; the frame budget usually ends the run first


def test_live_enip_server_survives_mutated_frames():
    device = Device.from_specs(["SCADA=INT[100]", "Text=STRING[2]"])
    with serve_in_thread(device, udp=False) as srv:
        result = fuzz("enip", "127.0.0.1", srv.port, seconds=SECONDS, max_frames=100_000)
        assert len(srv.sessions) <= 1  # only the probe's, which fuzz() closed: none left behind
    assert result.frames >= 2_000 and result.replies > result.frames // 4
    assert len(result.probe_latencies) == result.batches + 1


def test_live_modbus_server_survives_mutated_frames():
    with simulator(["40001-40100=99", "1-16=0", "10001-10008=1", "30001-30010=5"]) as (_, server):
        result = fuzz("modbus", HOST, server.port, seconds=SECONDS, max_frames=150_000)
    assert result.frames >= 2_000 and result.replies > result.frames // 4
    assert len(result.probe_latencies) == result.batches + 1
