"""Where the pymodbus 3.x server answers wrongly on the wire and ours does not.

The same raw frames go to our simulator and to a pymodbus server, both serving only holding
registers 40001-40100 = 99.  Cases pymodbus 3.16 gets wrong are expected failures on its side
(not strict: a later pymodbus may fix them); ours must pass them all.
"""

from __future__ import annotations

import struct

import pytest

from cpppo.modbus import framer
from tests.test_modbus_support import exchange, frame, pymodbus_server, simulator

pytestmark = pytest.mark.interop

H = bytes.fromhex

# name: (request frames, expected reply PDUs in order, pymodbus 3.16's observed defect or None)
CASES = {
    "read": ([frame(1, 1, H("03 0000 0002"))], [H("03 04 0063 0063")], None),
    "address outside the ranges": ([frame(1, 1, H("03 00c8 0001"))], [H("83 02")], None),
    "unknown function: 0x80|fc, code 1": ([frame(1, 1, H("41 0000 0001"))], [H("c1 01")],
                                          "answers function 0x80 (not 0xc1)"),
    "quantity 0: code 3": ([frame(1, 1, H("03 0000 0000"))], [H("83 03")],
                           "answers 0x80 code 1 (illegal function)"),
    "quantity 126: code 3": ([frame(1, 1, H("03 0000 007e"))], [H("83 03")],
                             "answers 0x80 code 1 (illegal function)"),
    "three requests in one segment": (
        [frame(t, 1, struct.pack(">BHH", 3, t, 1)) for t in (1, 2, 3)],
        [H("03 02 0063")] * 3, "answers only the first; the rest are dropped as 'extra data'"),
    "table not configured: code 2": ([frame(1, 1, H("01 0000 0001"))], [H("81 02")],
                                     "answers coil data for coils never configured"),
}


@pytest.fixture(scope="module")
def ours():
    with simulator(["40001-40100=99"], unit_ids=None) as (_, server):
        yield server.port


@pytest.fixture(scope="module")
def theirs():
    with pymodbus_server() as port:
        yield port


def _check(port: int, frames: list[bytes], expect: list[bytes]) -> None:
    data = exchange(port, b"".join(frames), timeout=1.0,
                    expect=sum(6 + 1 + len(pdu) for pdu in expect))
    got = []
    while data:
        consumed, _, pdu = framer.decode(data)
        assert consumed
        got.append(pdu)
        data = data[consumed:]
    assert got == expect


@pytest.mark.parametrize("case", CASES)
def test_ours(ours, case):
    frames, expect, _ = CASES[case]
    _check(ours, frames, expect)


@pytest.mark.parametrize("case", [
    pytest.param(name, marks=pytest.mark.xfail(reason=f"pymodbus 3.16: {defect}", strict=False))
    if defect else name for name, (_, _, defect) in CASES.items()])
def test_pymodbus(theirs, case):
    frames, expect, _ = CASES[case]
    _check(theirs, frames, expect)
