"""The simulated Modbus device: register specs, address mapping (spec 3.1.1), function
semantics and exception replies, unit ids and identification."""

from __future__ import annotations

import pytest

from cpppo.modbus.address import Table, locate, parse_spec
from cpppo.modbus.device import ModbusDevice

H = bytes.fromhex


@pytest.mark.parametrize(("number", "table", "offset"), [
    (1, Table.COILS, 0), (9999, Table.COILS, 9998),
    (10001, Table.DISCRETE_INPUTS, 0), (19999, Table.DISCRETE_INPUTS, 9998),
    (100001, Table.DISCRETE_INPUTS, 0), (165536, Table.DISCRETE_INPUTS, 65535),
    (30001, Table.INPUT_REGISTERS, 0), (300001, Table.INPUT_REGISTERS, 0),
    (365536, Table.INPUT_REGISTERS, 65535),
    (40001, Table.HOLDING_REGISTERS, 0), (99999, Table.HOLDING_REGISTERS, 59998),
    (400001, Table.HOLDING_REGISTERS, 0), (465536, Table.HOLDING_REGISTERS, 65535),
])
def test_register_numbers_map_to_tables(number, table, offset):
    assert locate(number) == (table, offset)


@pytest.mark.parametrize("number", [0, 10000, 20000, 29999, 100000, 165537, 465537])
def test_numbers_outside_the_table_are_rejected(number):
    with pytest.raises(ValueError, match=str(number)):
        locate(number)


def test_spec_grammar():
    assert parse_spec("40001-40100=99").values == (99,) * 100
    assert parse_spec("40001").values == ()
    assert parse_spec("40001", default=0) == (40001, 40001, (0,))
    assert parse_spec("1-5=1,0") == (1, 5, (1, 0, 1, 0, 1))
    assert parse_spec("40001=0x10,2") == (40001, 40002, (16, 2))
    for bad in ("", "x", "40001-", "40010-40001", "9999-10001", "40001=70000", "40001=a", "0"):
        with pytest.raises(ValueError, match="bad register spec"):
            parse_spec(bad)


def test_from_specs_names_a_bad_spec():
    with pytest.raises(ValueError, match="'4x'"):
        ModbusDevice.from_specs(["40001=1", "4x"])
    with pytest.raises(ValueError, match="unknown identity key 'colour'"):
        ModbusDevice.from_specs(["40001"], identity={"colour": "red"})


@pytest.fixture
def device():
    return ModbusDevice.from_specs(["40001-40010=7", "400101-400102=5", "1-10=1", "10001-10003=1",
                                    "30001-30002=3"], unit_ids=(1, 2))


def test_reads_of_each_table(device):
    assert device.handle(1, H("01 0000 000a")) == H("01 02 ff03")
    assert device.handle(1, H("02 0000 0003")) == H("02 01 07")
    assert device.handle(1, H("04 0000 0002")) == H("04 04 0003 0003")
    assert device.handle(2, H("03 0064 0002")) == H("03 04 0005 0005")     # 400101 = offset 100


@pytest.mark.parametrize(("pdu", "reply"), [
    (H("03 000a 0001"), H("83 02")),              # 40011 is not configured
    (H("03 0009 0002"), H("83 02")),              # straddles the end
    (H("03 0000 0000"), H("83 03")),              # quantity 0
    (H("03 0000 007e"), H("83 03")),              # quantity 126
    (H("06 0063 0001"), H("86 02")),
    (H("10 0009 0002 04 00010002"), H("90 02")),
    (H("41"), H("c1 01")),                         # unknown function: high bit set, code 1
    (H("08 0000 0000"), H("88 01")),               # diagnostics is serial-line only
    (H("2b 0d 00 00"), H("ab 01")),                # MEI 13 (CANopen) is not supported
    (H("2b 0e 04 10"), H("ab 02")),                # individual object 0x10 does not exist
])
def test_exception_replies(device, pdu, reply):
    assert device.handle(1, pdu) == reply


def test_writes_and_read_back(device):
    assert device.handle(1, H("06 0001 1234")) == H("06 0001 1234")
    assert device.handle(1, H("10 0002 0002 04 00010002")) == H("10 0002 0002")
    assert device.read(40001, 4) == [7, 0x1234, 1, 2]
    assert device.handle(1, H("05 0000 0000")) == H("05 0000 0000")
    assert device.handle(1, H("0f 0001 0003 01 02")) == H("0f 0001 0003")
    assert device.read(1, 5) == [0, 0, 1, 0, 1]
    assert device.handle(1, H("01 0000 0005")) == H("01 01 14")


def test_mask_write_and_read_write(device):
    device.write(40005, [0x12])
    assert device.handle(1, H("16 0004 00f2 0025")) == H("16 0004 00f2 0025")
    assert device.read(40005) == [0x17]                 # the spec's worked example
    assert device.handle(1, H("17 0000 0003 0008 0002 04 aaaa bbbb")) == H("17 06 0007 0007 0007")
    assert device.read(40009, 2) == [0xAAAA, 0xBBBB]
    # a read range that is not configured fails before anything is written
    assert device.handle(1, H("17 0063 0001 0000 0001 02 ffff")) == H("97 02")
    assert device.read(40001) == [7]


def test_unit_ids(device):
    assert device.handle(3, H("03 0000 0001")) == H("83 0b")
    anyone = ModbusDevice.from_specs(["40001=1"], unit_ids=None)
    assert all(anyone.handle(u, H("03 0000 0001")) == H("03 02 0001") for u in (0, 1, 7, 255))


def test_device_identification():
    device = ModbusDevice.from_specs(["40001"], identity={
        "vendor_name": "Acme", "product_code": "PLC-5", "major_minor_revision": "2.1",
        "product_name": "Widget", 0x80: b"\x01\x02"})
    basic = device.handle(1, H("2b 0e 01 00"))
    assert basic == H("2b 0e 01 83 00 00 03 0004") + b"Acme" + H("0105") + b"PLC-5" + H("0203") + b"2.1"
    regular = device.handle(1, H("2b 0e 02 00"))
    assert regular.endswith(H("0406") + b"Widget") and regular[6] == 4
    assert device.handle(1, H("2b 0e 03 00"))[6] == 5
    assert device.handle(1, H("2b 0e 04 80")) == H("2b 0e 04 83 00 00 01 80 02 0102")
    assert device.handle(1, H("2b 0e 01 55"))[6] == 3      # unknown start object: from 0


def test_long_identity_is_split_with_more_follows():
    device = ModbusDevice.from_specs(["40001"], identity={0x80 + i: b"x" * 200 for i in range(3)})
    first = device.handle(1, H("2b 0e 03 00"))
    assert first[4] == 0xFF and first[5] == 0x81 and first[6] == 4   # 3 basic + 0x80; next 0x81
    second = device.handle(1, H("2b 0e 03 81"))
    assert second[4] == 0xFF and second[5] == 0x82 and second[6] == 1
    last = device.handle(1, H("2b 0e 03 82"))
    assert last[4] == 0 and last[6] == 1 and len(last) <= 253
