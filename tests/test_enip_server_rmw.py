"""Read Modify Write Tag (0x4E), bit and member addressing, and program-scoped tags.

Byte vectors for the codec records (Logix 5000 Data Access manual, 1756-PM020), then the
service on the Message Router in process (``Dispatcher``: no sockets), then a few requests over
a real loopback connection."""

from __future__ import annotations

import struct
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpppo.enip.codec import CodecError, cip, logix
from cpppo.enip.codec.epath import Logical, Symbolic
from cpppo.enip.device.dispatch import Dispatcher, Session
from cpppo.enip.device.model import Attribute, Device
from cpppo.enip.device.services import PROGRAM_SYMBOL_TYPE
from cpppo.enip.server.background import serve_in_thread
from tests.test_enip_server import Wire

RMW = cip.Service.READ_MODIFY_WRITE_TAG
TAGS = ["S=SINT", "I=INT", "D=DINT", "L=LINT", "US=USINT", "UI=UINT", "UD=UDINT", "UL=ULINT",
        "Bits=DWORD[4]", "Arr=DINT[10]", "R=REAL", "LR=LREAL", "B=BOOL", "Flags=BOOL[8]", "Txt=STRING[2]",
        "Short=SSTRING", "Num@22/1/1=INT[2]", "Program:Main.Speed=REAL", "Program:Main.Counts=DINT[3]",
        "Program:Aux.Name=STRING"]


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# --- codec ----------------------------------------------------------------------------------

def test_rmw_request_vector_sets_a_dint_bit():
    # mask size 4, OR mask 0x00000020 (set bit 5), AND mask 0xFFFFFFFF (clear nothing)
    rmw = logix.ReadModifyWriteTag(4, 1 << 5, 0xFFFFFFFF)
    assert rmw.encode() == h("0400 20000000 ffffffff")
    request = cip.Request(RMW, (Symbolic("D"),), rmw.encode())
    # service 0x4E, path 2 words: 0x91 len 1 "D" pad
    assert request.encode() == h("4e 02 9101 4400 0400 20000000 ffffffff")
    assert logix.ReadModifyWriteTag.decode(rmw.encode()) == rmw


def test_rmw_request_vector_clears_a_sint_bit_and_keeps_pycomm3s_long_and_mask():
    # pycomm3 1.2 sends size 1, a 1-byte OR mask, and always 8 bytes of AND mask
    data = h("0100 00 7fffffffffffffff")
    rmw = logix.ReadModifyWriteTag.decode(data)
    assert (rmw.size, rmw.or_mask, rmw.and_mask) == (1, 0, 0x7F)
    assert rmw.excess == h("ffffffffffffff") and rmw.encode() == data
    assert rmw.apply(0xFF) == 0x7F and rmw.apply(0x1FF) == 0x17F  # only the low byte is masked


def test_rmw_reply_vector_is_empty():
    assert logix.ReadModifyWriteReply().encode() == b""
    assert cip.Reply(RMW).encode() == h("ce 00 00 00")
    reply = cip.Reply.decode(h("ce 00 ff 01 0721"))
    assert (reply.service, reply.status, reply.ext_status) == (RMW, 0xFF, (0x2107,))  # 0x80 bit dropped
    assert logix.ReadModifyWriteReply.decode(reply.data) == logix.ReadModifyWriteReply()
    with pytest.raises(CodecError, match="unexpected"):
        logix.ReadModifyWriteReply.decode(b"\x00")


@pytest.mark.parametrize("data, why", [(b"", "mask size"), (b"\x04", "mask size"),
                                       (b"\x00\x00", "is 0"), (h("0400 20000000 ffff"), "6 bytes")])
def test_rmw_decode_rejects_malformed_data(data, why):
    with pytest.raises(CodecError, match=why):
        logix.ReadModifyWriteTag.decode(data)


def test_rmw_encode_rejects_masks_wider_than_their_size():
    with pytest.raises(CodecError, match="do not fit"):
        logix.ReadModifyWriteTag(1, 0x100, 0xFF).encode()
    with pytest.raises(CodecError, match="mask size"):
        logix.ReadModifyWriteTag(0, 0, 0).encode()


@given(st.sampled_from([1, 2, 4, 8]).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, (1 << 8 * n) - 1), st.integers(0, (1 << 8 * n) - 1), st.binary(max_size=8))))
def test_rmw_round_trips(fields):
    rmw = logix.ReadModifyWriteTag(*fields)
    assert logix.ReadModifyWriteTag.decode(rmw.encode()) == rmw


# --- the service, in process ----------------------------------------------------------------

@pytest.fixture
def device() -> Device:
    return Device.from_specs(TAGS)


def call(device: Device, service: int, path: tuple, data: bytes = b"") -> cip.Reply:
    reply = Dispatcher(device).unconnected(cip.Request(service, path, data).encode(), Session())
    return cip.Reply.decode(reply)


def rmw(device: Device, path: tuple, size: int, or_mask: int, and_mask: int) -> cip.Reply:
    return call(device, RMW, path, logix.ReadModifyWriteTag(size, or_mask, and_mask).encode())


def value(device: Device, name: str, index: int = 0):
    return device.tag(name).attribute[index]


@pytest.mark.parametrize("name, size, bit, start, expected", [
    ("S", 1, 7, 0, -128), ("US", 1, 7, 0, 128), ("I", 2, 15, 1, -32767), ("UI", 2, 15, 1, 32769),
    ("D", 4, 31, 0, -(1 << 31)), ("UD", 4, 31, 5, (1 << 31) + 5), ("L", 8, 63, 0, -(1 << 63)),
    ("UL", 8, 40, 0, 1 << 40), ("D", 4, 0, -2, -1)])
def test_rmw_sets_a_bit_of_every_integer_type(device, name, size, bit, start, expected):
    device.tag(name).attribute[0] = start
    reply = rmw(device, (Symbolic(name),), size, 1 << bit, (1 << 8 * size) - 1)
    assert (reply.service, reply.status, reply.data) == (RMW, 0, b"")
    assert value(device, name) == expected


def test_rmw_clears_bits_and_leaves_the_others(device):
    device.tag("D").attribute[0] = -1
    assert rmw(device, (Symbolic("D"),), 4, 0, 0xFFFFFFFF & ~(1 << 3) & ~(1 << 31)).status == 0
    assert value(device, "D") == 0x7FFFFFF7
    # set and clear in one request; OR then AND
    assert rmw(device, (Symbolic("D"),), 4, 0b1000, 0xFFFFFFFE).status == 0
    assert value(device, "D") == 0x7FFFFFFE


def test_rmw_on_an_array_element_a_dword_bool_array_and_a_numeric_attribute(device):
    path = (Symbolic("Arr"), Logical("element", 7))
    assert rmw(device, path, 4, 0b101, 0xFFFFFFFF).status == 0
    assert device.tag("Arr").attribute[0:10] == [0] * 7 + [5, 0, 0]
    # BOOL[128] as a Logix controller stores it: Bits[37] is bit 5 of DWORD element 1
    assert rmw(device, (Symbolic("Bits"), Logical("element", 1)), 4, 1 << 5, 0xFFFFFFFF).status == 0
    assert device.tag("Bits").attribute[0:4] == [0, 32, 0, 0]
    num = (Logical("class", 22), Logical("instance", 1), Logical("attribute", 1), Logical("element", 1))
    assert rmw(device, num, 2, 0x8000, 0xFFFF).status == 0 and value(device, "Num", 1) == -32768


def test_rmw_with_narrower_masks_touches_only_the_low_bytes(device):
    device.tag("D").attribute[0] = 0x12345678
    assert rmw(device, (Symbolic("D"),), 1, 0x01, 0xF0).status == 0
    assert value(device, "D") == 0x12345670  # (0x78 | 0x01) & 0xF0


def test_rmw_ignores_bytes_after_the_and_mask(device):
    data = h("0400 08000000 ffffffff ffffffff")  # what pycomm3 sends to set DINT bit 3
    assert call(device, RMW, (Symbolic("D"),), data).status == 0 and value(device, "D") == 8


@pytest.mark.parametrize("size", [8, 3, 0])
def test_rmw_bad_mask_size_is_bad_parameter(device, size):
    data = struct.pack("<H", size) + b"\0" * (2 * size)
    reply = call(device, RMW, (Symbolic("D"),), data)
    assert (reply.status, reply.ext_status) == (0x03, ())
    assert value(device, "D") == 0


@pytest.mark.parametrize("name", ["R", "LR", "B", "Txt", "Short"])  # BOOL[8] is a DWORD: maskable
def test_rmw_on_a_non_integer_tag_is_a_type_mismatch(device, name):
    before = device.tag(name).attribute[0]
    reply = rmw(device, (Symbolic(name),), 1, 1, 0xFF)
    assert (reply.status, reply.ext_status) == (0xFF, (0x2107,))
    assert device.tag(name).attribute[0] == before


def test_rmw_errors_for_short_data_unknown_tags_range_and_faults(device):
    assert call(device, RMW, (Symbolic("D"),), h("0400 01000000 ffff")).status == 0x13
    assert call(device, RMW, (Symbolic("D"),), b"\x04").status == 0x13
    assert rmw(device, (Symbolic("Nope"),), 4, 1, 0xFFFFFFFF).status == 0x04
    reply = rmw(device, (Symbolic("Arr"), Logical("element", 10)), 4, 1, 0xFFFFFFFF)
    assert (reply.status, reply.ext_status) == (0xFF, (0x2105,))
    device.tag("D").attribute.error = 0x10
    assert rmw(device, (Symbolic("D"),), 4, 1, 0xFFFFFFFF).status == 0x10


def test_rmw_goes_through_attribute_hooks():
    seen = []

    class Recording(Attribute):
        def __setitem__(self, key, value):
            seen.append((key, value))
            super().__setitem__(key, value)

    device = Device.from_specs(["Word=INT[2]"], attribute_class=Recording)
    assert rmw(device, (Symbolic("Word"), Logical("element", 1)), 2, 0x0100, 0xFFFF).status == 0
    assert seen == [(1, 256)]


def test_concurrent_rmws_on_one_dint_lose_no_bit(device):
    dispatcher = Dispatcher(device)

    def set_bit(bit: int) -> None:
        for _ in range(50):
            for mask in (1 << bit, 0):  # set it, and (OR 0, AND all) rewrite it unchanged
                request = cip.Request(RMW, (Symbolic("UD"),), logix.ReadModifyWriteTag(
                    4, mask, 0xFFFFFFFF).encode()).encode()
                assert cip.Reply.decode(dispatcher.unconnected(request, Session())).status == 0

    threads = [threading.Thread(target=set_bit, args=(bit,)) for bit in range(0, 32, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert value(device, "UD") == sum(1 << bit for bit in range(0, 32, 4))


def test_rmw_inside_a_multiple_service_packet(device):
    masks = [logix.ReadModifyWriteTag(2, 1 << n, 0xFFFF).encode() for n in (0, 9)]
    requests = [cip.Request(RMW, (Symbolic("I"),), mask).encode() for mask in masks]
    requests.append(cip.Request(RMW, (Symbolic("R"),), h("0400 01000000 ffffffff")).encode())
    reply = call(device, cip.Service.MULTIPLE_SERVICE_PACKET, cip.MESSAGE_ROUTER_PATH,
                 cip.encode_multiple(requests))
    assert reply.status == 0x1E  # one embedded service failed
    statuses = [cip.Reply.decode(r).status for r in cip.decode_multiple(reply.data)]
    assert statuses == [0, 0, 0xFF] and value(device, "I") == 0x201


# --- STRING members, dotted names and program scope -------------------------------------------

def read(device: Device, path: tuple, count: int = 1) -> cip.Reply:
    return call(device, cip.Service.READ_TAG, path, logix.ReadTag(count).encode())


def test_string_members_read(device):
    device.tag("Txt").attribute[1] = "héllo"
    length = read(device, (Symbolic("Txt"), Logical("element", 1), Symbolic("LEN")))
    assert length.status == 0 and length.data == h("c400 05000000")  # DINT 5
    data = read(device, (Symbolic("Txt"), Logical("element", 1), Symbolic("DATA"), Logical("element", 1)), 3)
    assert data.status == 0 and data.data == h("c200 e96c6c")  # SINT[3]: é (0xE9), l, l
    whole = read(device, (Symbolic("Txt"), Symbolic("data")), 82)  # member names ignore case
    assert whole.status == 0 and whole.data == h("c200") + b"\0" * 82  # Txt[0] is empty


def test_string_members_write(device):
    device.tag("Txt").attribute[0] = "hello"
    sint = cip.Request(cip.Service.WRITE_TAG, (Symbolic("Txt"), Symbolic("DATA"), Logical("element", 0)),
                       logix.WriteTag(0xC2, 2, b"HE").encode())
    assert cip.Reply.decode(Dispatcher(device).unconnected(sint.encode(), Session())).status == 0
    assert value(device, "Txt") == "HEllo"
    dint = logix.WriteTag(0xC4, 1, struct.pack("<i", 2)).encode()
    assert call(device, cip.Service.WRITE_TAG, (Symbolic("Txt"), Symbolic("LEN")), dint).status == 0
    assert value(device, "Txt") == "HE"
    too_long = logix.WriteTag(0xC4, 1, struct.pack("<i", 83)).encode()
    assert call(device, cip.Service.WRITE_TAG, (Symbolic("Txt"), Symbolic("LEN")), too_long).status == 0x09


def test_string_member_errors(device):
    assert read(device, (Symbolic("Txt"), Symbolic("SIZE"))).status == 0x04
    assert read(device, (Symbolic("D"), Symbolic("LEN"))).status == 0x04  # a DINT has no members
    reply = read(device, (Symbolic("Txt"), Symbolic("DATA"), Logical("element", 82)))
    assert (reply.status, reply.ext_status) == (0xFF, (0x2105,))
    reply = read(device, (Symbolic("Txt"), Symbolic("DATA")), 83)
    assert (reply.status, reply.ext_status) == (0xFF, (0x2105,))


def test_program_tags_by_name_split_or_whole(device):
    device.tag("Program:Main.Speed").attribute[0] = 2.5
    split = read(device, (Symbolic("Program:Main"), Symbolic("Speed")))
    whole = read(device, (Symbolic("Program:Main.Speed"),))
    assert split.status == whole.status == 0 and split.data == whole.data == h("ca00 00002040")
    counts = (Symbolic("Program:Main"), Symbolic("Counts"), Logical("element", 2))
    assert rmw(device, counts, 4, 1 << 4, 0xFFFFFFFF).status == 0
    assert value(device, "Program:Main.Counts", 2) == 16
    name = (Symbolic("Program:Aux"), Symbolic("Name"), Symbolic("LEN"))
    assert read(device, name).status == 0
    assert read(device, (Symbolic("Program:Main"), Symbolic("Name"))).status == 0x04


def symbols(device: Device, path: tuple, attributes=(1, 2, 8)) -> list[logix.SymbolEntry]:
    reply = call(device, cip.Service.GET_INSTANCE_ATTRIBUTE_LIST, path,
                 logix.GetInstanceAttributeList(attributes).encode())
    assert reply.status == 0
    return logix.decode_symbol_entries(reply.data, attributes)


def test_controller_browse_lists_programs_not_their_tags(device):
    entries = symbols(device, (Logical("class", 0x6B), Logical("instance", 0)))
    names = [e.name for e in entries]
    assert names[:3] == ["S", "I", "D"] and names[-2:] == ["Program:Main", "Program:Aux"]
    assert not any("." in n for n in names)
    main = entries[-2]
    assert main.symbol_type == PROGRAM_SYMBOL_TYPE
    assert main.instance == device.tag("Program:Main.Speed").instance  # that of its first tag
    bits = next(e for e in entries if e.name == "Bits")
    assert bits.symbol_type == 0x20D3 and bits.dimensions == (4, 0, 0)


def test_program_browse_lists_its_tags_by_local_name(device):
    entries = symbols(device, (Symbolic("Program:Main"), Logical("class", 0x6B), Logical("instance", 0)))
    assert [(e.name, e.symbol_type, e.dimensions) for e in entries] == [
        ("Speed", 0xCA, (0, 0, 0)), ("Counts", 0x20C4, (3, 0, 0))]
    later = symbols(device, (Symbolic("program:main"), Logical("class", 0x6B),
                             Logical("instance", entries[1].instance)))
    assert [e.name for e in later] == ["Counts"]
    unknown = call(device, cip.Service.GET_INSTANCE_ATTRIBUTE_LIST,
                   (Symbolic("Program:Nope"), Logical("class", 0x6B), Logical("instance", 0)),
                   logix.GetInstanceAttributeList((1, 2)).encode())
    assert unknown.status == 0x05


def test_program_tags_by_symbol_instance_only_within_their_program(device):
    instance = device.tag("Program:Main.Speed").instance
    scoped = (Symbolic("Program:Main"), Logical("class", 0x6B), Logical("instance", instance))
    assert read(device, scoped).status == 0
    assert read(device, (Logical("class", 0x6B), Logical("instance", instance))).status == 0x05
    other = (Symbolic("Program:Aux"), Logical("class", 0x6B), Logical("instance", instance))
    assert read(device, other).status == 0x05


# --- over a real connection ---------------------------------------------------------------------

def test_rmw_over_tcp_routed_and_direct():
    device = Device.from_specs(["D=DINT", "R=REAL"])
    with serve_in_thread(device) as server:
        wire = Wire(server.port)
        try:
            mask = logix.ReadModifyWriteTag(4, 1 << 5, 0xFFFFFFFF).encode()
            set5 = cip.Request(RMW, (Symbolic("D"),), mask)
            reply = wire.routed(set5)
            assert (reply.service, reply.status) == (RMW, 0) and device.tag("D").attribute[0] == 32
            clear = cip.Request(RMW, (Symbolic("D"),), logix.ReadModifyWriteTag(4, 0, 0xFFFFFFDF).encode())
            assert wire.rr(clear.encode()).status == 0 and device.tag("D").attribute[0] == 0
            bad = cip.Request(RMW, (Symbolic("R"),), logix.ReadModifyWriteTag(4, 1, 0xFFFFFFFF).encode())
            assert wire.routed(bad).ext_status == (0x2107,)
        finally:
            wire.close()


@pytest.mark.parametrize(("data", "status"), [
    (b"", 0x13), (b"\x02\x00\x01\x00", 0x13), (b"\x01\x00\x01\x00\x07", 0x15)])
def test_get_attribute_list_of_the_wrong_length(device, data, status) -> None:
    """The codec's GetAttributeList request record decides the status a wrong length gets."""
    path = (Logical("class", 0xF5), Logical("instance", 1))
    assert call(device, cip.Service.GET_ATTRIBUTE_LIST, path, data).status == status
    reply = call(device, cip.Service.GET_ATTRIBUTE_LIST, path, cip.GetAttributeList((1, 0x63)).encode())
    assert reply.status == 0 and reply.data == cip.encode_attribute_list_reply(
        [(1, 0, b"\x02\x00\x00\x00"), (0x63, cip.Status.ATTRIBUTE_NOT_SUPPORTED, b"")])


@pytest.mark.parametrize(("data", "status"), [(b"\x00\x00\x00\x00\x10", 0x13), (b"\x00" * 7, 0x15)])
def test_read_template_of_the_wrong_length(device, data, status) -> None:
    from cpppo.enip.codec.types import STRING_HANDLE
    from cpppo.enip.device.objects import STRING_TEMPLATE

    path = (Logical("class", logix.TEMPLATE_CLASS), Logical("instance", STRING_HANDLE))
    assert call(device, cip.Service.READ_TAG, path, data).status == status
    whole = call(device, cip.Service.READ_TAG, path, logix.ReadTemplate(0, 1000).encode())
    assert whole.status == 0 and whole.data == STRING_TEMPLATE
