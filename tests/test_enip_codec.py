"""Byte vectors for the EtherNet/IP / CIP codec, derived field by field from the layouts in the
CIP Networks Library (Vol 1 Appendix B/C, Vol 2 chapter 2) and the Logix 5000 Data Access
manual, plus round-trips and error cases."""

from __future__ import annotations

import struct

import pytest

from cpppo.enip.codec import CodecError, cip, cpf, encapsulation, epath, logix
from cpppo.enip.codec import types as cip_types
from cpppo.enip.codec.epath import Data, Key, Logical, Port, Symbolic

CTX = b"abcdefgh"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# --- encapsulation ------------------------------------------------------------------------

def test_register_session_request_vector():
    # command 0x0065, length 4, session 0, status 0, context, options 0; version 1, options 0
    frame = encapsulation.encode(encapsulation.Command.REGISTER_SESSION,
                                 encapsulation.register_session_data(), context=CTX)
    assert frame == h("6500 0400 00000000 00000000") + CTX + h("00000000 0100 0000")
    consumed, header, payload = encapsulation.decode(frame + b"extra")
    assert consumed == 28
    assert header == encapsulation.Header(0x65, 4, 0, 0, CTX, 0)
    assert encapsulation.decode_register_session(payload) == (1, 0)


def test_framer_needs_more_bytes_and_frames_back_to_back():
    frame = encapsulation.encode(0x0000, b"xyz", session=0x11223344, status=1)
    assert frame[4:8] == h("44332211")
    for cut in range(len(frame)):
        assert encapsulation.decode(frame[:cut]) == (0, None, b"")
    two = frame + frame
    consumed, _, payload = encapsulation.decode(two)
    assert payload == b"xyz" and encapsulation.decode(two[consumed:])[0] == len(frame)
    assert encapsulation.peek_length(frame) == 3
    # the framers that unpack in place (the server's) use the codec's own header layout
    assert encapsulation.HEADER.unpack_from(frame) == (0, 3, 0x11223344, 1, b"\0" * 8, 0)


def test_sender_context_numbers_requests():
    assert encapsulation.sender_context(1) == h("0100000000000000")
    assert encapsulation.sender_context(0x0102030405060708) == h("0807060504030201")
    assert encapsulation.sender_context(2**64 + 3) == encapsulation.sender_context(3)  # wraps
    frame = encapsulation.encode(0x6F, b"", context=encapsulation.sender_context(77))
    assert int.from_bytes(encapsulation.decode(frame)[1].context, "little") == 77


def test_encapsulation_rejects_bad_fields():
    with pytest.raises(CodecError):
        encapsulation.encode(0x65, b"", context=b"short")
    with pytest.raises(CodecError):
        encapsulation.encode(0x65, b"x" * 70000)
    with pytest.raises(CodecError):
        encapsulation.decode_register_session(b"\x01\x00")


# --- CPF ----------------------------------------------------------------------------------

def test_send_rr_data_body_vector():
    body = cpf.encode_rr_data(b"\x0e\x03\x20\x01\x24\x01\x30\x07", timeout=5)
    # interface handle 0, timeout 5, 2 items: null address (0,0) + unconnected data (0xB2, 8)
    assert body == h("00000000 0500 0200 0000 0000 b200 0800 0e03200124013007")
    assert cpf.decode_rr_data(body) == cpf.RRData(h("0e03200124013007"), 5, 0)


def test_send_unit_data_body_vector():
    body = cpf.encode_unit_data(0x01020304, 7, b"\x4c\x00")
    assert body == h("00000000 0000 0200 a100 0400 04030201 b100 0400 0700 4c00")
    assert cpf.decode_unit_data(body) == cpf.UnitData(0x01020304, 7, b"\x4c\x00")


@pytest.mark.parametrize("bad", [
    h("00000000 0000"),                                  # no item count
    h("00000000 0000 0100 b200 0400 0102"),              # item runs past the end
    h("00000000 0000 0100 0000 0000 ff"),                # trailing garbage
    h("00000000 0000 0100 0000 0000"),                   # no 0xB2 item
])
def test_rr_data_errors(bad):
    with pytest.raises(CodecError):
        cpf.decode_rr_data(bad)


def test_list_identity_item_vector():
    item = cpf.IdentityItem(vendor_id=1, device_type=14, product_code=54, revision=(20, 11),
                            status=0x0030, serial_number=0x006C061A, product_name="1756-L61/B LOGIX5561",
                            state=3, sin_addr="10.0.0.1", sin_port=44818)
    data = item.encode()
    expected = (h("0100")                                  # encapsulation protocol version
                + h("0002 af12 0a000001 0000000000000000")  # sockaddr_in, big-endian
                + h("0100 0e00 3600 14 0b 3000 1a066c00")   # vendor, type, code, rev, status, serial
                + bytes([20]) + b"1756-L61/B LOGIX5561" + h("03"))
    assert data == expected
    assert cpf.IdentityItem.decode(data) == item
    with pytest.raises(CodecError):
        cpf.IdentityItem.decode(data[:-1])


def test_list_services_and_legacy_items():
    assert cpf.CommunicationsService().encode() == h("0100 2001") + b"Communications\0\0"
    assert cpf.CommunicationsService.decode(cpf.CommunicationsService().encode()).capability == 0x120
    legacy = cpf.LegacyItem("192.168.5.253").encode()
    assert legacy == h("0100 0000 0002 af12 c0a805fd 0000000000000000") + b"192.168.5.253\0\0\0"
    assert len(legacy) == 36 and cpf.LegacyItem.decode(legacy).ip_address == "192.168.5.253"


# --- EPATH --------------------------------------------------------------------------------

@pytest.mark.parametrize(("segments", "raw"), [
    ((Logical("class", 6), Logical("instance", 1)), "2006 2401"),
    ((Logical("class", 0x6B), Logical("instance", 0x1234)), "206b 2500 3412"),
    ((Logical("class", 1), Logical("instance", 0x12345678)), "2001 2600 78563412"),
    ((Logical("class", 1), Logical("instance", 1), Logical("attribute", 7)), "2001 2401 3007"),
    ((Symbolic("SCADA"), Logical("element", 3)), "9105 5343414441 00 2803"),
    ((Symbolic("Tag"), Logical("element", 300)), "9103 546167 00 2900 2c01"),
    ((Symbolic("Tag"), Logical("element", 70000)), "9103 546167 00 2a00 70110100"),
    ((Symbolic("AB"), Symbolic("Member")), "9102 4142 9106 4d656d626572"),
    ((Port(1, 0),), "0100"),
    ((Port(2, "192.168.1.2"),), "120b 3139322e3136382e312e32 00"),
    ((Port(18, 1),), "0f12 0001"),
    ((Key(h("0100 0e00 3600 1400")),), "3404 01000e0036001400"),
    ((Data(b"ab"),), "8001 6162"),
    ((Logical("connection_point", 1),), "2c01"),
])
def test_epath_vectors(segments, raw):
    assert epath.encode(segments) == h(raw)
    assert epath.decode(h(raw)) == segments


def test_epath_sized_and_errors():
    sized = epath.encode_sized((Logical("class", 2), Logical("instance", 1)))
    assert sized == h("02 2002 2401")
    assert epath.decode_sized(sized + b"rest") == ((Logical("class", 2), Logical("instance", 1)), 5)
    for bad in ("20", "2500 34", "9105 5343", "e0 00", "2300", "3405 00", "1205 3132"):
        with pytest.raises(CodecError):
            epath.decode(h(bad))
    with pytest.raises(CodecError):
        epath.decode_sized(h("05 2002"))
    with pytest.raises(CodecError):
        epath.encode((Logical("class", -1),))


def test_parse_route_path_forms():
    assert epath.parse_route_path("1/0") == (Port(1, 0),)
    assert epath.parse_route_path('["port": 1, "link": 0]') == (Port(1, 0),)
    assert epath.parse_route_path('[{"port": 1, "link": 3}, "2/1.2.3.4"]') == (Port(1, 3), Port(2, "1.2.3.4"))
    assert epath.parse_route_path("2/192.168.1.2") == (Port(2, "192.168.1.2"),)
    assert epath.parse_route_path("false") is False and epath.parse_route_path("0") is False
    assert epath.parse_route_path(None) is None
    for bad in ("1/x.y", "{nope", '{"port": 1}', "0/1", "1/300"):
        with pytest.raises(ValueError):
            epath.parse_route_path(bad)


# --- CIP request / reply, Unconnected Send, Forward Open, MSP ---------------------------

def test_request_reply_vectors():
    request = cip.Request(0x0E, (Logical("class", 1), Logical("instance", 1), Logical("attribute", 7)))
    assert request.encode() == h("0e 03 2001 2401 3007")
    assert cip.Request.decode(h("0e 03 2001 2401 3007")) == request
    # reply: service|0x80, reserved, general status 0xFF, 1 extended word 0x2105
    reply = cip.Reply(0x4C, 0xFF, (0x2105,))
    assert reply.encode() == h("cc 00 ff 01 0521")
    assert cip.Reply.decode(h("cc 00 ff 01 0521")) == reply
    assert cip.Reply.decode(h("cc 00 00 00 c300 0700")).data == h("c300 0700")
    for bad in ("0e", "0e 05 2001", "8e 03 2001 2401 3007"):
        with pytest.raises(CodecError):
            cip.Request.decode(h(bad))
    for bad in ("8e 00 00", "8e 00 00 02 0000", "4c 00 00 00"):
        with pytest.raises(CodecError):
            cip.Reply.decode(h(bad))


def test_unconnected_send_vector():
    inner = h("10 03 2001 2401 3007 05")  # odd length (9): padded
    send = cip.UnconnectedSend(inner, (Port(1, 0),))
    data = send.encode()
    # priority 0x0A, ticks 0x05, size 11, message, pad, route size 1 word, reserved, 01 00
    assert data == h("0a 05 0900") + inner + h("00 01 00 0100")
    assert cip.UnconnectedSend.decode(data) == send
    assert send.request().encode()[:6] == h("52 02 2006 2401")
    assert cip.UnconnectedSend.decode(h("0a 05 0200 0e00")).route_path == ()
    with pytest.raises(CodecError):
        cip.UnconnectedSend.decode(h("0a 05 0900 0e00"))


def test_forward_open_vectors():
    fo = cip.ForwardOpen(o_t_connection=0, t_o_connection=0x12345678, serial=0x0102, vendor=0x1337,
                         originator_serial=0xAABBCCDD, multiplier=7, o_t_rpi=2000000, o_t_params=0x43F8,
                         t_o_rpi=2000000, t_o_params=0x43F8, transport=0xA3,
                         path=(Port(1, 0), Logical("class", 2), Logical("instance", 1)))
    data = fo.encode()
    assert data == h("0a 0e 00000000 78563412 0201 3713 ddccbbaa 07 000000 80841e00 f843 80841e00 f843 a3"
                     " 03 0100 2002 2401")
    assert cip.ForwardOpen.decode(data) == fo and fo.connection_size == 0x1F8
    large = cip.ForwardOpen(o_t_params=0x42000FA2, t_o_params=0x42000FA2, large=True, path=fo.path)
    assert large.encode()[26:30] == h("a20f0042") and cip.ForwardOpen.decode(large.encode(), True) == large
    assert large.connection_size == 4002
    reply = cip.ForwardOpenReply(0x11, 0x22, 0x0102, 0x1337, 0xAABBCCDD, 2000000, 2000000)
    assert reply.encode() == h("11000000 22000000 0201 3713 ddccbbaa 80841e00 80841e00 0000")
    assert cip.ForwardOpenReply.decode(reply.encode()) == reply
    close = cip.ForwardClose(0x0102, 0x1337, 0xAABBCCDD, fo.path)
    assert close.encode() == h("0a 0e 0201 3713 ddccbbaa 03 00 0100 2002 2401")
    assert cip.ForwardClose.decode(close.encode()) == close
    closed = cip.ForwardCloseReply(1, 2, 3)
    assert cip.ForwardCloseReply.decode(closed.encode()) == closed
    assert cip.ForwardOpenFailure(1, 2, 3).encode() == h("0100 0200 03000000 00 00")
    with pytest.raises(CodecError):
        cip.ForwardOpen.decode(data[:-2])


def test_multiple_service_packet_vector():
    a, b = h("4c 02 9101 4100 0100"), h("0e 03 2001 2401 3007")
    data = cip.encode_multiple([a, b])
    # count 2, offsets 6 and 6+len(a)
    assert data == h("0200 0600 0e00") + a + b
    assert cip.decode_multiple(data) == [a, b]
    for bad in (h("0000"), h("0200 0600"), h("0100 0100 00"), h("0200 0800 0600 0000 0000")):
        with pytest.raises(CodecError):
            cip.decode_multiple(bad)


# --- types --------------------------------------------------------------------------------

@pytest.mark.parametrize(("ctype", "values", "raw"), [
    (cip_types.SINT, [-1, 2], "ff02"),
    (cip_types.USINT, [255], "ff"),
    (cip_types.INT, [-2, 0x1234], "feff 3412"),
    (cip_types.UINT, [0xFFFF], "ffff"),
    (cip_types.DINT, [-1], "ffffffff"),
    (cip_types.UDINT, [0x12345678], "78563412"),
    (cip_types.LINT, [1], "0100000000000000"),
    (cip_types.ULINT, [2**64 - 1], "ffffffffffffffff"),
    (cip_types.REAL, [1.0], "0000803f"),
    (cip_types.LREAL, [-2.0], "00000000000000c0"),
    (cip_types.BOOL, [True, False], "0100"),
    (cip_types.SSTRING, ["Hi", ""], "024869 00"),
    (cip_types.STRING, ["Hi"], "0200 4869"),
])
def test_type_vectors(ctype, values, raw):
    assert ctype.encode(values) == h(raw)
    assert ctype.decode(h(raw)) == values


def test_type_codes_and_logix_string():
    assert [cip_types.TYPES[n].code for n in ("BOOL", "SINT", "INT", "DINT", "LINT", "USINT", "UINT", "UDINT",
                                      "ULINT", "REAL", "LREAL", "SSTRING")] == [
        0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xDA]
    assert cip_types.BY_CODE[0xD0] is cip_types.STRING and cip_types.TYPES["STRING"] is cip_types.LOGIX_STRING
    raw = cip_types.LOGIX_STRING.encode(["Hello"])
    assert len(raw) == 88 and raw[:9] == h("05000000") + b"Hello" and raw[9:] == b"\0" * 79
    assert cip_types.LOGIX_STRING.decode(raw * 2) == ["Hello", "Hello"]
    with pytest.raises(CodecError):
        cip_types.LOGIX_STRING.encode(["x" * 83])
    with pytest.raises(CodecError):
        cip_types.INT.decode(b"\x01")
    with pytest.raises(CodecError):
        cip_types.INT.encode([70000])
    with pytest.raises(CodecError):
        cip_types.SSTRING.decode(b"\x05ab")
    with pytest.raises(ValueError):
        cip_types.SINT.coerce(200)
    assert cip_types.REAL.coerce("1.5") == 1.5 and cip_types.BOOL.coerce(5) is True


@pytest.mark.parametrize(("name", "text", "value"), [
    ("INT", " -12 ", -12), ("DINT", "0x10", 16), ("USINT", "0b101", 5), ("REAL", "2.5", 2.5),
    ("LREAL", "1e300", 1e300), ("BOOL", "on", True), ("BOOL", "False", False), ("BOOL", "2", True),
    ("STRING", "hi there", "hi there"), ("SSTRING", "", ""),
])
def test_typed_text_is_parsed_by_the_type(name, text, value):
    """What a person types (the simulator's web API, the fleet page's write box) read by the
    codec's type: one reading for both."""
    assert cip_types.TYPES[name].parse(text) == value


@pytest.mark.parametrize(("name", "text", "why"), [
    ("INT", "70000", "out of range"), ("SINT", "2.5", "invalid literal"),
    ("REAL", "fast", "could not convert"), ("BOOL", "maybe", "not a boolean"),
    ("REAL", "1e39", "out of range"), ("SSTRING", "x" * 256, "longer than"),
])
def test_typed_text_that_does_not_fit_is_refused(name, text, why):
    with pytest.raises(ValueError, match=why):
        cip_types.TYPES[name].parse(text)


# --- Logix services -----------------------------------------------------------------------

def test_logix_service_vectors():
    assert logix.ReadTag(10).encode() == h("0a00")
    assert logix.ReadTagFragmented(100, 0x1F4).encode() == h("6400 f4010000")
    assert logix.ReadTagFragmented.decode(h("6400 f4010000")) == logix.ReadTagFragmented(100, 500)
    assert logix.TypedData(0xC3, h("0100")).encode() == h("c300 0100")
    assert logix.TypedData.decode(h("a002 ce0f") + b"x" * 88) == logix.TypedData(0xA0, b"x" * 88, 0x0FCE)
    write = logix.WriteTag(0xC4, 2, h("01000000 02000000"))
    assert write.encode() == h("c400 0200 01000000 02000000")
    assert logix.WriteTag.decode(write.encode()) == write
    string = logix.WriteTag(0xA0, 1, b"s" * 88, 0x0FCE)
    assert string.encode()[:6] == h("a002 ce0f 0100") and logix.WriteTag.decode(string.encode()) == string
    frag = logix.WriteTagFragmented(0xC3, 300, 200, h("0100"))
    assert frag.encode() == h("c300 2c01 c8000000 0100")
    assert logix.WriteTagFragmented.decode(frag.encode()) == frag
    assert logix.GetInstanceAttributeList((1, 2, 8)).encode() == h("0300 0100 0200 0800")
    for bad, kind in ((h("0a"), logix.ReadTag), (h("c3"), logix.WriteTag), (h("a003 ce0f"), logix.WriteTag),
                      (h("0200 0100"), logix.GetInstanceAttributeList)):
        with pytest.raises(CodecError):
            kind.decode(bad)


def test_symbol_entries_round_trip():
    entries = [logix.SymbolEntry(1, "SCADA", 0x20C3, (1000, 0, 0)), logix.SymbolEntry(2, "Text", 0x8FCE)]
    attributes = (1, 2, 3, 5, 6, 8, 10)
    raw = b"".join(logix.encode_symbol_entry(e, attributes) for e in entries)
    assert raw[:4] == h("01000000") and raw[4:11] == h("0500") + b"SCADA" and raw[11:13] == h("c320")
    assert logix.decode_symbol_entries(raw, attributes) == entries
    assert struct.unpack_from("<H", logix.encode_symbol_entry(entries[1], (2,)), 4)[0] == 0x8FCE
    with pytest.raises(CodecError):
        logix.decode_symbol_entries(raw[:-3], attributes)
