"""Implicit (Class 1) I/O: the packet codec, assemblies over tags, the adapter's Connection
Manager (every refusal with its extended status, sans-IO with a fake clock), and our scanner
with our adapter on loopback sockets (data both ways, close and reopen, timeouts, bad UDP
input that disturbs nothing), and the command lines."""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpppo.enip.client.scanner import ForwardOpenError, Scanner
from cpppo.enip.codec import CodecError, cip, cpf
from cpppo.enip.codec.epath import Data, Logical
from cpppo.enip.codec.implicit import (
    POINT_TO_POINT,
    NetworkParams,
    Packet,
    Sockaddr,
    Transport,
    decode_data,
    decode_packet,
    decode_sockaddr,
    encode_data,
    encode_packet,
    encode_sockaddr,
    sequence_gap,
)
from cpppo.enip.device.assembly import Assemblies, parse_assembly_spec
from cpppo.enip.device.connections import ConnectionManager, IOPolicy
from cpppo.enip.device.dispatch import Dispatcher, Session
from cpppo.enip.device.model import Device
from cpppo.faults import Fault
from tests.enip_io_support import ASSEMBLIES, TAGS, adapter, io_host, scan

# --- codec --------------------------------------------------------------------------------------

def test_packet_layout():
    packet = encode_packet(0x11223344, 5, b"\x01\x00ab")
    assert packet == (b"\x02\x00" b"\x02\x80\x08\x00" b"\x44\x33\x22\x11\x05\x00\x00\x00"
                      b"\xb1\x00\x04\x00\x01\x00ab")
    assert decode_packet(packet) == Packet(0x11223344, 5, b"\x01\x00ab")


@pytest.mark.parametrize("packet, why", [
    (b"\x02\x00\x02\x80", "too short"),
    (encode_packet(1, 1, b"x")[:-1], "does not match"),
    (b"\x01" + encode_packet(1, 1, b"x")[1:], "2 items"),
    (encode_packet(1, 1, b"x").replace(b"\xb1\x00", b"\xb2\x00"), "not connected data"),
])
def test_bad_packets(packet, why):
    with pytest.raises(CodecError, match=why):
        decode_packet(packet)


@given(st.binary(max_size=64))
def test_any_bytes_only_raise_codec_error(data):
    try:
        decode_packet(data)
    except CodecError:
        pass


def test_class_1_data_layout():
    """The CIP sequence count, the run/idle header (O->T) and the data: what both ends share."""
    assert encode_data(0x10002, b"ab", run=True) == b"\x02\x00\x01\x00\x00\x00ab"  # count mod 2**16
    assert encode_data(7, b"ab", run=False) == b"\x07\x00\x00\x00\x00\x00ab"
    assert encode_data(7) == b"\x07\x00"  # a heartbeat, or T->O data without a header
    assert decode_data(b"\x07\x00\x05\x00\x00\x00ab", header=True) == (7, True, b"ab")
    assert decode_data(b"\x07\x00\x04\x00\x00\x00ab", header=True) == (7, False, b"ab")
    assert decode_data(b"\x07\x00ab", header=False) == (7, None, b"ab")
    for data, header in ((b"\x07", False), (b"\x07\x00\x01\x00\x00", True)):
        with pytest.raises(CodecError, match="too short"):
            decode_data(data, header)


@given(st.integers(0, 0xFFFF), st.booleans() | st.none(), st.binary(max_size=16))
def test_class_1_data_round_trip(count, run, data):
    assert decode_data(encode_data(count, data, run), header=run is not None) == (count, run, data)


@pytest.mark.parametrize("last, sequence, gap", [
    (5, 6, 0), (5, 9, 3), (0xFFFFFFFF, 1, 1),  # ahead, modulo 2**32
    (5, 5, None), (5, 4, None), (5, 5 + 0x80000000, None),  # a duplicate, old packets
    (5, 5 + 0x10000, 0xFFFF), (5, 6 + 0x10000, None),  # the window; a stray far ahead
])
def test_sequence_gap(last, sequence, gap):
    assert sequence_gap(last, sequence) == gap


@given(st.integers(0, 0xFFFF), st.booleans(), st.integers(0, 3), st.integers(0, 3), st.booleans())
def test_network_params_round_trip(size, variable, priority, kind, redundant):
    params = NetworkParams(size, variable, priority, kind, redundant)
    assert NetworkParams.decode(params.encode(True), True) == params
    if size <= 0x1FF:
        assert NetworkParams.decode(params.encode(False), False) == params


def test_transport_and_sockaddr():
    assert Transport.decode(0x01) == Transport(1, 0, False)
    assert Transport(3, 2, True).encode() == 0xA3
    raw = encode_sockaddr(Sockaddr("127.0.0.1", 2222))
    assert raw == b"\x00\x02\x08\xae\x7f\x00\x00\x01" + b"\0" * 8
    assert decode_sockaddr(raw) == Sockaddr("127.0.0.1", 2222)


# --- assemblies ---------------------------------------------------------------------------------

def _device() -> tuple[Device, Assemblies]:
    device = Device.from_specs(TAGS)
    return device, Assemblies.from_specs(device, ASSEMBLIES)


def test_assembly_maps_tags():
    device, assemblies = _device()
    device.tag("Inputs").attribute[0:2] = [1, -2]
    device.tag("Status").attribute[0] = 7
    inputs = assemblies.get(100)
    assert inputs.size == 10 and inputs.read() == struct.pack("<iih", 1, -2, 7)
    assemblies.get(150).write(struct.pack("<hh", 5, 6))
    assert device.tag("Outputs").attribute[0:2] == [5, 6]
    with pytest.raises(ValueError, match="holds 4 bytes"):
        assemblies.get(150).write(b"\0")
    # explicit messaging reaches attribute 3 of the data assemblies
    reply = Dispatcher(device).unconnected(cip.Request(0x0E, (Logical("class", 4), Logical("instance", 100),
                                                              Logical("attribute", 3))).encode(), Session())
    assert cip.Reply.decode(reply).data == struct.pack("<iih", 1, -2, 7)


@pytest.mark.parametrize("spec, why", [
    ("100", "expected"), ("x=in:A", "not a number"), ("0=in:A", "1-65535"), ("100=inn:A", "not one of"),
    ("100=in", "at least one tag"), ("198=input-only:A", "carries no tags"),
])
def test_bad_assembly_specs(spec, why):
    with pytest.raises(ValueError, match=why):
        parse_assembly_spec(spec)


def test_assembly_needs_existing_fixed_size_tags():
    device = Device.from_specs(["A=INT", "S=SSTRING"])
    with pytest.raises(ValueError, match="no tag 'B'"):
        Assemblies.from_specs(device, ["100=in:B"])
    with pytest.raises(ValueError, match="variable-size"):
        Assemblies.from_specs(device, ["100=in:S"])
    with pytest.raises(ValueError, match="declared twice"):
        Assemblies.from_specs(device, ["100=in:A", "100=out:A"])


def test_behaviours_drive_inputs_not_outputs():
    """A behaviour moves an input assembly's bytes (each read of the tags); an output or
    configuration assembly over a driven tag is refused: the scanner writes those tags."""
    device = Device.from_specs(["Count=DINT~counter(rate=1000, update=0)",
                                "Out=INT~sine(amplitude=5, period=9)", "Plain=INT"])
    inputs = Assemblies.from_specs(device, ["100=in:Count,Out"]).get(100)
    seen = {struct.unpack_from("<i", inputs.read())[0] for _ in range(1000)}
    end = time.monotonic() + 30
    while len(seen) < 3 and time.monotonic() < end:  # whole counts at 1,000/s
        seen.add(struct.unpack_from("<i", inputs.read())[0])
    assert len(seen) >= 3
    for kind in ("out", "config"):
        with pytest.raises(ValueError, match=f"tag 'Out' is driven by its behaviour \\(sine\\); an {kind} "):
            Assemblies.from_specs(device, [f"150={kind}:Plain,Out"])


# --- the Connection Manager, sans-IO --------------------------------------------------------------

_triads = iter(range(1, 10_000))


def _open(manager: ConnectionManager, *, points=(150, 100), config=151, data=b"\x01\x02", o_t_size=10,
          t_o_size=12, rpi=10_000, transport=1, o_t_kind=POINT_TO_POINT, t_o_kind=POINT_TO_POINT, triad=None,
          large=False, items=()) -> tuple[cip.Reply, list, tuple]:
    triad = triad or (next(_triads), 1, 99)
    path = (Logical("class", 4), Logical("instance", config),
            *(Logical("connection_point", p) for p in points), *((Data(data),) if data else ()))
    request = cip.ForwardOpen(0, 0x1000 + triad[0], *triad, multiplier=0, o_t_rpi=rpi,
                              o_t_params=NetworkParams(o_t_size, kind=o_t_kind).encode(large), t_o_rpi=rpi,
                              t_o_params=NetworkParams(t_o_size, kind=t_o_kind).encode(large),
                              transport=transport, path=path, large=large)
    raw, extra = manager.forward_open(0x5B if large else 0x54, request, "127.0.0.9", items)
    return cip.Reply.decode(raw), extra, triad


@pytest.fixture
def manager():
    device, assemblies = _device()
    return ConnectionManager(assemblies, IOPolicy(rpi_min=2_000, rpi_max=1_000_000)), device


@pytest.mark.parametrize("kwds, ext", [
    ({"points": (150, 101)}, (0x0117,)),                       # no such input assembly
    ({"points": (151, 100)}, (0x0117,)),                       # a config assembly is no O->T point
    ({"o_t_size": 12}, (0x0109, 10)),                          # sequence 2 + header 4 + data 4, said
    ({"t_o_size": 11}, (0x0109, 12)),
    ({"rpi": 500}, (0x0112, 0x0202, 2000, 0, 2000, 0)),        # below --rpi-range: the minimum, both ways
    ({"rpi": 2_000_000}, (0x0112, 0x0303, 0x4240, 0x000F, 0x4240, 0x000F)),  # above: the maximum, 1 s
    ({"transport": 0x11}, (0x0103,)),                          # change of state trigger
    ({"t_o_kind": 1}, (0x0108,)),                              # multicast T->O
    ({"config": 150}, (0x0118,)),                              # config data for a non-config instance
    ({"data": b"\x01\x02\x03\x04"}, (0x0109, 2)),              # config data of the wrong size
    ({"points": (150, 100, 100)}, (0x0315,)),
])
def test_forward_open_refusals(manager, kwds, ext):
    manager, _device = manager
    reply, _extra, triad = _open(manager, **kwds)
    assert reply.status == 0x01 and reply.ext_status == ext
    failure = cip.ForwardOpenFailure.decode(reply.data)
    assert (failure.serial, failure.vendor, failure.originator_serial) == triad
    assert not manager.by_o_t and manager.refused == 1


def test_rpi_refusal_names_the_direction(manager):
    """An O->T RPI in range and a T->O one too slow: type 0 and the O->T RPI as asked, type 3
    and the maximum for T->O."""
    manager, _device = manager
    request = cip.ForwardOpen(0, 0x2000, 77, 1, 99, multiplier=0, o_t_rpi=10_000,
                              o_t_params=NetworkParams(10).encode(False), t_o_rpi=5_000_000,
                              t_o_params=NetworkParams(12).encode(False), transport=1,
                              path=(Logical("class", 4), Logical("instance", 151),
                                    Logical("connection_point", 150), Logical("connection_point", 100)))
    reply = cip.Reply.decode(manager.forward_open(0x54, request, "127.0.0.9", ())[0])
    assert reply.ext_status == (0x0112, 0x0300, 10_000, 0, 0x4240, 0x000F)


def test_forward_open_bad_path_segment(manager):
    manager, _device = manager
    request = cip.ForwardOpen(transport=1, path=(Logical("class", 2), Logical("instance", 1)),
                              o_t_params=NetworkParams(10).encode(False),
                              t_o_params=NetworkParams(12).encode(False),
                              o_t_rpi=10_000, t_o_rpi=10_000, serial=1, vendor=1, originator_serial=1)
    reply = cip.Reply.decode(manager.forward_open(0x54, request, "127.0.0.9", ())[0])
    assert reply.ext_status == (0x0315,)


def test_owner_input_only_listen_only(manager):
    manager, device = manager
    reply, extra, triad = _open(manager)
    assert reply.status == 0 and extra == []  # port 2222: no Sockaddr Info needed
    assert device.tag("Setup").attribute[0:2] == [1, 2]  # the config data landed
    opened = cip.ForwardOpenReply.decode(reply.data)
    again, _e, _t = _open(manager, triad=triad)
    assert again.ext_status == (0x0100,)  # the triad is in use
    other, _e, _t = _open(manager)
    assert other.ext_status == (0x0106,)  # the output assembly has its owner
    listen, _e, _t = _open(manager, points=(199, 100), o_t_size=2, data=b"")
    inputs, _e, _t = _open(manager, points=(198, 100), o_t_size=2, data=b"", large=True)
    assert listen.status == 0 and inputs.status == 0
    kinds = sorted(c.kind for c in manager.by_o_t.values())
    assert kinds == ["input-only", "listen-only", "owner"]
    close = cip.ForwardClose(*triad)
    assert cip.Reply.decode(manager.forward_close(close)).status == 0
    assert manager.forward_close(close) is None  # not ours any more: the dispatcher answers 0x0107
    assert len(manager.by_o_t) == 2  # the input-only connection still produces for the listener
    assert opened.o_t_connection not in manager.by_o_t
    input_only = next(c for c in manager.by_o_t.values() if c.kind == "input-only")
    manager.close(input_only, "closed")
    assert not manager.by_o_t  # the listen-only connection went with the last producer
    assert manager.closed[-1].closed == "owner gone"


def test_no_class_1_without_assemblies():
    """A device that is no adapter refuses a Class 1 Forward Open: transport not supported."""
    request = cip.ForwardOpen(transport=1, path=(Logical("class", 4), Logical("instance", 1)),
                              o_t_params=NetworkParams(10).encode(False),
                              t_o_params=NetworkParams(12).encode(False), serial=1, vendor=1,
                              originator_serial=1)
    dispatcher = Dispatcher(Device.from_specs(TAGS))
    reply = cip.Reply.decode(dispatcher.unconnected(request.request().encode(), Session()))
    assert reply.status == 0x01 and reply.ext_status == (0x0103,)


def test_listen_only_needs_a_producer(manager):
    manager, _device = manager
    reply, _e, _t = _open(manager, points=(199, 100), o_t_size=2, data=b"")
    assert reply.ext_status == (0x0119,)


def test_consume_and_timeout(manager):
    manager, device = manager
    reply, _extra, _triad = _open(manager)
    o_t = cip.ForwardOpenReply.decode(reply.data).o_t_connection
    connection = manager.by_o_t[o_t]
    peer = ("127.0.0.9", 2222)
    start = connection.opened

    def packet(sequence, count, run=1, values=(3, 4), size=None):  # 10 bytes: count, run/idle, INT[2]
        data = struct.pack("<HIhh", count, run, *values)
        return Packet(o_t, sequence, data if size is None else data[:size])

    assert manager.consume(packet(1, 1, run=0), peer, start + 0.01) is connection
    assert device.tag("Outputs").attribute[0:2] == [0, 0]  # idle: outputs are not applied
    assert manager.consume(packet(2, 2), peer, start + 0.02) is connection
    assert device.tag("Outputs").attribute[0:2] == [3, 4] and connection.run
    assert manager.consume(packet(2, 3, values=(9, 9)), peer, start + 0.03) is None  # same sequence: dropped
    assert manager.consume(packet(1, 3, values=(9, 9)), peer, start + 0.03) is None  # old
    assert manager.consume(packet(3, 3, size=8), peer, start + 0.03) is None  # short
    assert manager.consume(Packet(o_t ^ 1, 3, b""), peer, start + 0.03) is None  # unknown id
    assert manager.consume(packet(3, 3, values=(9, 9)), ("127.0.0.8", 2222), start + 0.03) is None  # stranger
    assert manager.consume(packet(6, 4, values=(5, 5)), peer, start + 0.2) is connection
    assert connection.missing == 3 and connection.late == 1 and connection.dropped == 3
    assert device.tag("Outputs").attribute[0:2] == [5, 5]
    ident, sequence, data = manager.produce(connection)
    assert ident == connection.t_o and sequence == 1 and data[:2] == b"\x01\x00" and len(data) == 12
    assert manager.expired(start + 0.2 + connection.timeout - 0.001) == []
    assert manager.expired(start + 0.2 + connection.timeout) == [connection]  # x4 multiplier x 10 ms
    assert connection.closed == "timed out" and not manager.by_o_t


def test_packet_rates(manager):
    """Packets per second from the totals sampled (at most once a second) over the last 5 s."""
    manager, _device = manager
    reply, _extra, _triad = _open(manager)
    connection = manager.by_o_t[cip.ForwardOpenReply.decode(reply.data).o_t_connection]
    assert manager.rates() == (0.0, 0.0)
    manager.sample(100.0)
    connection.received, connection.sent = 50, 100
    manager.sample(100.5)  # too soon: not kept
    assert manager.rates() == (0.0, 0.0)
    manager.sample(101.0)
    assert manager.rates() == (50.0, 100.0)
    connection.received, connection.sent = 350, 400
    manager.sample(107.0)  # the sample of 100.0 is out of the window
    assert manager.rates() == (50.0, 50.0)
    manager.close(connection, "closed")  # the totals keep what closed connections counted
    manager.sample(108.0)
    assert manager.rates() == (300 / 7, 300 / 7)


def test_outputs_a_tag_refuses_are_dropped(manager):
    """An O->T packet whose data a tag refuses (a user Attribute raising) is counted as
    dropped; the connection and the next packets go on."""
    manager, device = manager
    reply, _extra, _triad = _open(manager)
    connection = manager.by_o_t[cip.ForwardOpenReply.decode(reply.data).o_t_connection]
    outputs = device.tag("Outputs").attribute
    refuse = [True]

    def write(data: bytes, real=connection.consumed.write) -> None:
        if refuse[0]:
            raise cip.ServiceError(0x0F, (), "refused by a hook")
        real(data)

    connection.consumed.write = write
    peer, now = ("127.0.0.9", 2222), connection.opened
    o_t = connection.o_t
    assert manager.consume(Packet(o_t, 1, struct.pack("<HIhh", 1, 1, 7, 8)), peer, now) is connection
    assert connection.dropped == 1 and outputs[0:2] == [0, 0] and connection.o_t in manager.by_o_t
    refuse[0] = False
    assert manager.consume(Packet(o_t, 2, struct.pack("<HIhh", 2, 1, 7, 8)), peer, now) is connection
    assert outputs[0:2] == [7, 8] and connection.dropped == 1


def test_sockaddr_items(manager):
    manager, _device = manager
    items = (cpf.Item(cpf.SOCKADDR_T_O, encode_sockaddr(Sockaddr("0.0.0.0", 40000))),)
    reply, _extra, _triad = _open(manager, items=items)
    o_t = cip.ForwardOpenReply.decode(reply.data).o_t_connection
    assert manager.by_o_t[o_t].destination == ("127.0.0.9", 40000)
    manager.policy = IOPolicy(io_host="127.0.0.9", io_port=3333)
    reply, extra, _triad = _open(manager, points=(198, 100), o_t_size=2, data=b"")
    assert extra == [cpf.Item(cpf.SOCKADDR_O_T, encode_sockaddr(Sockaddr("127.0.0.9", 3333)))]


# --- on loopback sockets --------------------------------------------------------------------------

def test_our_scanner_with_our_adapter():
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host) as ours:
        ours.call(lambda: ours.device.tag("Inputs").attribute.__setitem__(slice(0, 2), [100, 200]))
        for large in (False, True):  # open, close, reopen (with a Large Forward Open)
            packets, scanner = scan(host, local, large=large)
            assert packets[-1].data == struct.pack("<iih", 100, 200, 0)
            assert [p.count for p in packets] == sorted(p.count for p in packets)
            assert scanner.missing == 0 and scanner.error == ""
            assert ours.call(lambda: ours.device.tag("Outputs").attribute[0:2]) == [12, -13]
            assert ours.call(lambda: ours.device.tag("Setup").attribute[0:2]) == [5, 6]
            assert ours.status()["connections"] == []  # the Forward Close freed it
        counters = ours.call(ours.endpoint.manager.counters)
        assert counters["connections"] == 0 and counters["sent"] >= 60 and counters["received"] >= 1
        # the same counters as CIP attributes @0x3A0/1/<n> (UDINT), for any EtherNet/IP client
        sent = cip.Request(0x0E, (Logical("class", 0x3A0), Logical("instance", 1), Logical("attribute", 2)))
        reply = ours.call(lambda: Dispatcher(ours.device).unconnected(sent.encode(), Session()))
        assert struct.unpack("<I", cip.Reply.decode(reply).data)[0] >= counters["sent"]


def test_scanner_callback():
    """``Scanner(..., on_input=callback)``: every input packet to the callback, in order; the
    connection ends when the adapter falls silent and ``wait_closed()`` returns."""
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host) as ours:
        ours.call(lambda: ours.device.tag("Inputs").attribute.__setitem__(slice(0, 2), [7, 8]))

        async def run() -> tuple[list, Scanner]:
            packets = []
            enough = asyncio.Event()

            def on_input(packet) -> None:
                packets.append(packet)
                if len(packets) == 20:
                    enough.set()

            scanner = Scanner(host, inputs=(100, 10), outputs=(150, 4), rpi=0.01, multiplier=0,
                              io_address=(local, 0), on_input=on_input)
            await scanner.open()
            try:
                await asyncio.wait_for(enough.wait(), 30)
                ours.call(lambda: ours.device.faults.set(Fault("offline")))
                await asyncio.wait_for(scanner.wait_closed(), 30)
            finally:
                await scanner.close()
            return packets, scanner

        packets, scanner = asyncio.run(run())
        assert len(packets) >= 20 and {p.data for p in packets} == {struct.pack("<iih", 7, 8, 0)}
        assert [p.sequence for p in packets] == sorted(p.sequence for p in packets)
        assert "0x0203" in scanner.error


def test_several_scanners_on_one_adapter():
    """An owner, an input-only and a listen-only connection at once, from three scanners."""
    host = io_host()
    locals_ = [io_host() for _ in range(3)]
    with adapter(TAGS, ASSEMBLIES, host) as ours:
        async def one(kind: str, local: str, point: int) -> int:
            async with Scanner(host, inputs=(100, 10), outputs=(point, 4 if kind == "owner" else 0), rpi=0.01,
                               kind=kind, io_address=(local, 0)) as scanner:
                async for _packet in scanner:
                    if scanner.received >= 20:
                        break
                return scanner.received

        async def run() -> list:
            owner = Scanner(host, inputs=(100, 10), outputs=(150, 4), rpi=0.01, io_address=(locals_[0], 0))
            async with owner:
                await asyncio.sleep(0.05)  # the owner first: a listen-only connection needs a producer
                return await asyncio.gather(one("input-only", locals_[1], 198),
                                            one("listen-only", locals_[2], 199))

        assert asyncio.run(run()) == [20, 20]
        assert ours.status()["connections"] == [] and ours.status()["refused"] == 0


def test_default_t_o_port_2222():
    """No Sockaddr Info: T->O data goes to the originator's address at port 2222 (ODVA)."""
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host) as _ours:
        packets, _scanner = scan(host, local, count=5, io_port=2222)
        assert len(packets) == 5


def test_adapter_on_another_io_port_says_so():
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host, io_port=0) as ours:
        assert ours.endpoint.port != 2222
        packets, scanner = scan(host, local, count=5)
        assert scanner.target == (host, ours.endpoint.port) and len(packets) == 5


def test_refusals_over_the_wire():
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host) as ours:
        for kwds, ext in (({"inputs": (101, 10)}, 0x0117), ({"inputs": (100, 8)}, 0x0109),
                          ({"rpi": 20.0}, 0x0112)):
            async def refused(kwds=kwds):
                scanner = Scanner(host, **{"inputs": (100, 10), "outputs": (150, 4), "rpi": 0.01,
                                           "io_address": (local, 0), **kwds})
                await scanner.open()
            with pytest.raises(ForwardOpenError) as info:
                asyncio.run(refused())
            assert info.value.ext_status[0] == ext
        assert ours.status()["refused"] == 3


def test_bad_udp_disturbs_nothing():
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host) as ours:
        async def run():
            async with Scanner(host, inputs=(100, 10), outputs=(150, 4), config=(151, b""), rpi=0.01,
                               io_address=(local, 0)) as scanner:
                got = 0
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
                    junk.bind((local, 0))
                    async for _packet in scanner:
                        got += 1
                        if got == 5:  # garbage, unknown ids, old and replayed sequence numbers, oversize
                            for data in (b"", b"\xff" * 7, encode_packet(0xDEAD, 1, b"\0" * 12),
                                         encode_packet(scanner.o_t, 1, b"\0" * 12),
                                         encode_packet(scanner.o_t, 2**32 - 1, b"\0" * 12),
                                         encode_packet(scanner.o_t, 10**6, b"\0" * 2000),
                                         encode_packet(scanner.o_t, 10**6, b"\0" * 10), b"\0" * 1400):
                                junk.sendto(data, (host, 2222))
                        if got == 40:
                            break
                return scanner
        scanner = asyncio.run(run())
        assert scanner.error == "" and scanner.received >= 40
        status = ours.call(lambda: ours.endpoint.status())
        assert status["bad"] == 3 and status["unknown"] == 5
        counters = ours.call(ours.endpoint.manager.counters)
        assert counters["missing"] == 0 and counters["dropped"] == 4
        assert ours.call(lambda: ours.device.tag("Outputs").attribute[0:2]) == [0, 0]


def test_offline_fault_silences_io():
    """An injected ``offline`` fault stops the adapter's inputs: the scanner times out."""
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host) as ours:
        async def run():
            async with Scanner(host, inputs=(100, 10), outputs=(150, 4), rpi=0.01, multiplier=0,
                               io_address=(local, 0)) as scanner:
                async for _packet in scanner:
                    if scanner.received == 5:
                        ours.call(lambda: ours.device.faults.set(Fault("offline")))
            return scanner
        scanner = asyncio.run(run())
        assert "0x0203" in scanner.error


def test_adapter_times_out_a_silent_scanner():
    host, local = io_host(), io_host()
    with adapter(TAGS, ASSEMBLIES, host) as ours:
        async def run():
            scanner = Scanner(host, inputs=(100, 10), outputs=(150, 4), config=(151, b""), rpi=0.01,
                              multiplier=0, io_address=(local, 0))
            await scanner.open()
            await asyncio.sleep(0.1)
            scanner.producing = False  # the scanner goes silent, without a Forward Close
            for _ in range(200):
                if not ours.status()["connections"]:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            await scanner.close()
            return scanner
        scanner = asyncio.run(run())
        assert ours.call(lambda: ours.endpoint.manager.closed[-1].closed) == "timed out"
        assert "0x0203" in scanner.error  # and the scanner saw its inputs stop


# --- command lines --------------------------------------------------------------------------------

def _readme_io_commands() -> list[list[str]]:
    """The sh block of README's implicit I/O section: the enip_server line, then clients."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = re.search(r"^## Implicit I/O.*?\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    block = re.search(r"^```sh\n(.*?)^```", section, re.S | re.M).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_readme_io_commands():
    """The README's adapter and scanner lines, run with an address (and client UDP port) of
    our own: inputs printed, outputs written into the tag, input-only beside the owner."""
    host = io_host()
    server_line, *clients = _readme_io_commands()
    assert server_line[0] == "enip_server" and all(c[0] == "enip_client" for c in clients)
    argv = [w if w != "127.60.0.1" else host for w in server_line[1:]]
    server = subprocess.Popen([sys.executable, "-m", "cpppo.server.enip", *argv],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = [sys.executable, "-m", "cpppo.server.enip.client", "-a", host]
        for _ in range(100):
            done = subprocess.run([*client, "Inputs[0]=(DINT)77"], capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                break
            time.sleep(0.1)
        for line in clients:
            argv = [w if w != "127.60.0.1" else host for w in line[1:]]
            done = subprocess.run([sys.executable, "-m", "cpppo.server.enip.client", *argv, "--io-port", "0"],
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            rows = [row.split() for row in done.stdout.splitlines()]
            assert len(rows) == 5 and {r[2] for r in rows} == {struct.pack("<iih", 77, 0, 0).hex()}
        done = subprocess.run([*client, "Outputs[0-1]", "-p"], capture_output=True, text=True, timeout=30)
        assert "[42, 7]" in done.stdout
        done = subprocess.run([*client, "--io", "100:10,150:4", "--rpi", "20000", "--io-port", "0"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and "outside" in done.stderr
        done = subprocess.run([*client, "--io", "101:8,150:4", "--io-port", "0"], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 1 and done.stderr.strip().endswith("(0x0117)")
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("argv, why", [
    (["--assembly", "100=in:Nope", "A=INT"], "no tag 'Nope'"),
    (["--assembly", "100=in", "A=INT"], "at least one tag"),
    (["--t-o-port", "nowhere", "A=INT"], "a port number or 'source'"),
    (["--rpi-range", "5-1", "A=INT"], "min <= max"),
    (["--assembly", "150=out:A", "A=INT~counter(rate=1)"], "tag 'A' is driven by its behaviour (counter)"),
])
def test_enip_server_io_flag_errors(argv, why):
    done = subprocess.run([sys.executable, "-m", "cpppo.server.enip", "-a", f"{io_host()}:0", *argv],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and why in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_enip_server_io_policy_flags():
    from cpppo.enip.cli.server import build_parser, io_policy

    argv = ["--t-o-port", "source", "--rpi-range", "2-50", "--lenient-sizes", "A=INT"]
    args = build_parser().parse_args(argv)
    assert io_policy(args, "127.0.0.9") == IOPolicy(rpi_min=2000, rpi_max=50000, t_o_port="source",
                                                    io_host="127.0.0.9", lenient_sizes=True)
    assert not io_policy(build_parser().parse_args(["A=INT"]), "").lenient_sizes  # ODVA's sizes by default


def test_enip_client_io_flag_errors():
    done = subprocess.run([sys.executable, "-m", "cpppo.server.enip.client", "--io", "x"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "bad --io" in done.stderr and len(done.stderr.strip().splitlines()) == 1
