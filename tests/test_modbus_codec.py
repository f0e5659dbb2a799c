"""The sans-IO Modbus codec: MBAP framer and PDUs, byte vectors from the Modbus Application
Protocol v1.1b3 examples, hypothesis round-trips, and a seeded 100,000-frame fuzz."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpppo.modbus import framer
from cpppo.modbus import pdu as codec
from cpppo.modbus.device import ModbusDevice
from cpppo.modbus.errors import ExceptionResponse, FrameError, RequestError, ResponseError

H = bytes.fromhex

# (request record, request PDU, reply PDU, decoded result): the worked examples of the spec.
SPEC_EXAMPLES = [
    (codec.ReadRequest(1, 19, 19), H("01 0013 0013"), H("01 03 cd6b05"),
     tuple(bool(int(b)) for b in "1011001111010110101")),
    (codec.ReadRequest(2, 196, 22), H("02 00c4 0016"), H("02 03 acdb35"),
     tuple(bool((0x35dbac >> i) & 1) for i in range(22))),
    (codec.ReadRequest(3, 107, 3), H("03 006b 0003"), H("03 06 022b 0000 0064"), (555, 0, 100)),
    (codec.ReadRequest(4, 8, 1), H("04 0008 0001"), H("04 02 000a"), (10,)),
    (codec.WriteSingleRequest(5, 172, True), H("05 00ac ff00"), H("05 00ac ff00"), None),
    (codec.WriteSingleRequest(6, 1, 3), H("06 0001 0003"), H("06 0001 0003"), None),
    (codec.WriteMultipleRequest(15, 19, tuple(bool(int(b)) for b in "1011001110")),
     H("0f 0013 000a 02 cd01"), H("0f 0013 000a"), None),
    (codec.WriteMultipleRequest(16, 1, (10, 258)), H("10 0001 0002 04 000a 0102"),
     H("10 0001 0002"), None),
    (codec.MaskWriteRequest(4, 0x00F2, 0x0025), H("16 0004 00f2 0025"), H("16 0004 00f2 0025"), None),
    (codec.ReadWriteRequest(3, 6, 14, (0xFF, 0xFF, 0xFF)), H("17 0003 0006 000e 0003 06 00ff00ff00ff"),
     H("17 0c 00fe 0acd 0001 0003 000d 00ff"), (0xFE, 0xACD, 1, 3, 0xD, 0xFF)),
]


@pytest.mark.parametrize(("request_", "request_pdu", "reply_pdu", "result"), SPEC_EXAMPLES,
                         ids=[f"fc{e[0].function}" for e in SPEC_EXAMPLES])
def test_spec_examples_encode_decode(request_, request_pdu, reply_pdu, result):
    assert request_.encode() == request_pdu
    assert codec.decode_request(request_pdu) == request_
    decoded = codec.decode_response(request_, reply_pdu)
    assert decoded == (request_ if result is None else result)


def test_mbap_header_fields():
    data = H("1501 0000 0006 ff 03 0004 0001") + H("00")        # one frame and a spare byte
    consumed, header, pdu = framer.decode(data)
    assert consumed == 12
    assert header == framer.MBAPHeader(transaction_id=0x1501, protocol_id=0, length=6, unit_id=0xFF)
    assert pdu == H("03 0004 0001")
    assert framer.encode(0x1501, 0xFF, pdu) == data[:12]


@pytest.mark.parametrize("size", range(0, 12))
def test_mbap_incomplete_needs_more(size):
    assert framer.decode(H("0001 0000 0006 01 03 0000 0001")[:size]) == (0, None, b"")


@pytest.mark.parametrize(("data", "why"), [
    (H("0001 0005 0006 01 03 0000 0001"), "protocol id 5"),
    (H("0001 0000 0000 01"), "length 0"),
    (H("0001 0000 0001 01"), "length 1"),
    (H("0001 0000 00ff 01"), "length 255"),
    (H("0001 0000 ffff 01"), "length 65535"),
])
def test_mbap_malformed_header_raises_at_once(data, why):
    with pytest.raises(FrameError, match=why):
        framer.decode(data)


def test_encode_rejects_bad_pdu_sizes():
    with pytest.raises(FrameError):
        framer.encode(1, 1, b"")
    with pytest.raises(FrameError):
        framer.encode(1, 1, b"\x03" * 254)


@pytest.mark.parametrize(("pdu", "code"), [
    (H("41 0000 0001"), 1), (H("07"), 1), (H("2b 0d 01 00"), 1), (b"", 1),
    (H("03 0000 0000"), 3), (H("03 0000 007e"), 3), (H("01 0000 07d1"), 3), (H("03 0000"), 3),
    (H("05 0000 1234"), 3), (H("0f 0000 0009 01 ff"), 3), (H("10 0000 0002 03 000100"), 3),
    (H("10 0000 007c f8") + bytes(248), 3), (H("17 0000 0001 0000 007a f4") + bytes(244), 3),
    (H("2b 0e 05 00"), 3), (H("16 0000 ffff"), 3),
])
def test_bad_requests_name_their_exception_code(pdu, code):
    with pytest.raises(RequestError) as info:
        codec.decode_request(pdu)
    assert info.value.code == code
    assert str(info.value)


def test_exception_reply_and_mismatches():
    request = codec.ReadRequest(3, 0, 2)
    with pytest.raises(ExceptionResponse) as info:
        codec.decode_response(request, H("83 02"))
    assert (info.value.function, info.value.code) == (3, 2)
    assert "illegal data address" in str(info.value)
    for bad in (H("04 04 0000 0000"), H("03 03 000000"), H("03 04 0000"), b"", H("83")):
        with pytest.raises(ResponseError):
            codec.decode_response(request, bad)
    with pytest.raises(ResponseError):
        codec.decode_response(codec.WriteSingleRequest(6, 1, 3), H("06 0001 0004"))


def test_device_identification_round_trip():
    reply = codec.DeviceIdentification(1, 0x82, False, 0, {0: b"cpppo", 1: b"sim", 2: b"1.0"})
    expect = H("2b 0e 01 82 00 00 03 0005") + b"cpppo" + H("0103") + b"sim" + H("0203") + b"1.0"
    assert reply.encode() == expect
    assert codec.decode_response(codec.DeviceIdRequest(1, 0), reply.encode()) == reply
    with pytest.raises(ResponseError):
        codec.decode_response(codec.DeviceIdRequest(1, 0), reply.encode()[:-1])


def test_bits_pack_lsb_first():
    assert codec.pack_bits([1, 0, 0, 0, 0, 0, 0, 0, 1]) == H("01 01")
    assert codec.unpack_bits(H("cd 01"), 10) == tuple(bool(int(b)) for b in "1011001110")
    assert codec.pack_bits([]) == b""


# Properties.

addresses = st.integers(0, 0xFFFF)
registers = st.integers(0, 0xFFFF)
requests = st.one_of(
    st.builds(codec.ReadRequest, st.sampled_from([1, 2]), addresses, st.integers(1, 2000)),
    st.builds(codec.ReadRequest, st.sampled_from([3, 4]), addresses, st.integers(1, 125)),
    st.builds(codec.WriteSingleRequest, st.just(5), addresses, st.booleans()),
    st.builds(codec.WriteSingleRequest, st.just(6), addresses, registers),
    st.builds(codec.WriteMultipleRequest, st.just(15), addresses,
              st.lists(st.booleans(), min_size=1, max_size=1968).map(tuple)),
    st.builds(codec.WriteMultipleRequest, st.just(16), addresses,
              st.lists(registers, min_size=1, max_size=123).map(tuple)),
    st.builds(codec.MaskWriteRequest, addresses, registers, registers, function=st.just(22)),
    st.builds(codec.ReadWriteRequest, addresses, st.integers(1, 125), addresses,
              st.lists(registers, min_size=1, max_size=121).map(tuple), function=st.just(23)),
    st.builds(codec.DeviceIdRequest, st.integers(1, 4), st.integers(0, 255), function=st.just(43)),
)


@settings(max_examples=300, deadline=None)
@given(requests, st.integers(0, 0xFFFF), st.integers(0, 255))
def test_request_round_trip_through_frame(request_, tid, unit):
    data = framer.encode(tid, unit, request_.encode())
    consumed, header, pdu = framer.decode(data + b"\x00\x07")
    assert consumed == len(data)
    assert (header.transaction_id, header.unit_id) == (tid, unit)
    assert codec.decode_request(pdu) == request_


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_frame_error(data):
    try:
        consumed, header, pdu = framer.decode(data)
    except FrameError:
        return
    assert consumed == 0 or (consumed == 6 + header.length and len(pdu) == header.length - 1)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=260), st.integers(0, 255))
def test_device_answers_any_pdu_without_raising(pdu, unit):
    device = ModbusDevice.from_specs(["40001-40010=1", "1-8=0"], unit_ids=None)
    reply = device.handle(unit, pdu)
    assert 1 <= len(reply) <= 253
    if reply[0] & 0x80:
        assert len(reply) == 2 and reply[1] in (1, 2, 3)


def _mutate(rng: random.Random, data: bytearray) -> bytearray:
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.5 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.7:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        elif choice < 0.9 and data:
            del data[rng.randrange(len(data))]
        else:
            data.extend(rng.randbytes(rng.randint(0, 20)))
    return data


def test_seeded_fuzz_100k_frames_through_codec_and_device():
    """100,000 mutated and random frames: the framer either needs more, decodes, or raises
    FrameError; every decoded PDU gets a well-formed reply from the device."""
    rng = random.Random(20240601)
    device = ModbusDevice.from_specs(["40001-40100=99", "1-100=1", "30001-30010=5", "10001-10010=0"],
                                     unit_ids=(1, 2))
    seeds = [framer.encode(i, 1, e[1]) for i, e in enumerate(SPEC_EXAMPLES)]
    seeds += [framer.encode(99, 1, H("2b 0e 01 00"))]
    outcomes = {"need more": 0, "decoded": 0, "frame error": 0, "exception reply": 0}
    for n in range(100_000):
        if n % 4:
            data = _mutate(rng, bytearray(rng.choice(seeds)))
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 40)))
        try:
            consumed, header, pdu = framer.decode(data)
        except FrameError:
            outcomes["frame error"] += 1
            continue
        if not consumed:
            outcomes["need more"] += 1
            continue
        outcomes["decoded"] += 1
        reply = device.handle(header.unit_id, pdu)
        framer.encode(header.transaction_id, header.unit_id, reply)     # always encodable
        if reply[0] & 0x80:
            outcomes["exception reply"] += 1
            assert len(reply) == 2 and reply[1] in (1, 2, 3, 0x0B)
    assert sum(outcomes[k] for k in ("need more", "decoded", "frame error")) == 100_000
    assert all(outcomes.values()), outcomes          # every path was exercised
