"""Robustness: random and mutated input never crashes the codec (only CodecError), never makes
the dispatcher raise, and never stops a live server from answering.

A seeded random/mutation loop supplies the volume (>= 100,000 frames through the codec);
hypothesis supplies round-trip and "any bytes" properties."""

from __future__ import annotations

import random
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from cpppo.enip.codec import CodecError, cip, cpf, encapsulation, epath, logix
from cpppo.enip.codec import types as cip_types
from cpppo.enip.codec.epath import Logical, Port, Symbolic
from cpppo.enip.device.dispatch import Dispatcher, Session
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from tests.test_enip_server import Wire, read

DECODERS = [
    lambda b: encapsulation.decode(b),
    cpf.decode_rr_data, cpf.decode_unit_data, cpf.decode_items,
    cip.Request.decode, cip.Reply.decode, cip.UnconnectedSend.decode, cip.decode_multiple,
    cip.ForwardOpen.decode, lambda b: cip.ForwardOpen.decode(b, True), cip.ForwardClose.decode,
    cip.ForwardOpenReply.decode, epath.decode, lambda b: epath.decode_sized(b),
    logix.ReadTag.decode, logix.ReadTagFragmented.decode, logix.WriteTag.decode,
    logix.WriteTagFragmented.decode,
    logix.TypedData.decode, logix.GetInstanceAttributeList.decode,
    lambda b: logix.decode_symbol_entries(b, (1, 2, 8)),
    cpf.IdentityItem.decode, cpf.LegacyItem.decode, cpf.CommunicationsService.decode,
    cip_types.SSTRING.decode, cip_types.STRING.decode, cip_types.LOGIX_STRING.decode, cip_types.REAL.decode,
]


def valid_messages() -> list[bytes]:
    """Seeds for mutation: valid CIP requests and whole encapsulated frames."""
    reads = [read("SCADA", 1, 3).encode(), read("Text").encode(),
             cip.Request(0x4D, (Symbolic("SCADA"), Logical("element", 2)),
                         logix.WriteTag(0xC3, 2, b"\1\0\2\0").encode()).encode(),
             cip.Request(0x52, (Symbolic("SCADA"),), logix.ReadTagFragmented(100, 20).encode()).encode(),
             cip.Request(0x0E, (Logical("class", 1), Logical("instance", 1), Logical("attribute", 7)))
             .encode(),
             cip.Request(0x55, (Logical("class", 0x6B), Logical("instance", 0)),
                         logix.GetInstanceAttributeList((1, 2, 8)).encode()).encode()]
    routed = [cip.UnconnectedSend(m, (Port(1, 0),)).request().encode() for m in reads]
    multiple = cip.Request(0x0A, cip.MESSAGE_ROUTER_PATH, cip.encode_multiple(reads[:3])).encode()
    fo = cip.ForwardOpen(t_o_connection=1, serial=2, path=(Port(1, 0), Logical("class", 2),
                                                           Logical("instance", 1))).request().encode()
    messages = reads + routed + [multiple, fo]
    frames = [encapsulation.encode(0x6F, cpf.encode_rr_data(m), session=7) for m in messages]
    frames.append(encapsulation.encode(0x65, encapsulation.register_session_data()))
    frames.append(encapsulation.encode(0x70, cpf.encode_unit_data(5, 1, reads[0]), session=7))
    return messages + frames


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.4 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif choice < 0.6 and buf:
            del buf[rng.randrange(len(buf)):][: rng.randint(1, 8)]
        elif choice < 0.8:
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif buf:
            buf = buf[: rng.randrange(len(buf))]
    return bytes(buf)


def test_codec_survives_100k_random_and_mutated_frames():
    rng = random.Random(20240525)
    seeds = valid_messages()
    decoded = errors = 0
    for n in range(100_000):
        if n % 4 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            data = mutate(rng, rng.choice(seeds))
        decoder = DECODERS[n % len(DECODERS)]
        try:
            decoder(data)
            decoded += 1
        except CodecError:
            errors += 1
    assert decoded + errors == 100_000 and decoded > 1000 and errors > 1000


def test_dispatcher_answers_every_mutated_request():
    rng = random.Random(7)
    device = Device.from_specs(["SCADA=INT[100]", "Text=STRING[2]", "R=REAL"])
    dispatcher, session = Dispatcher(device), Session()
    seeds = valid_messages()[:14]
    for _ in range(20_000):
        reply = dispatcher.unconnected(mutate(rng, rng.choice(seeds)), session)
        decoded = cip.Reply.decode(reply)  # always a well-formed reply
        assert decoded.status <= 0xFF
    assert dispatcher.unconnected(read("SCADA", 0).encode(), session) == b"\xcc\x00\x00\x00\xc3\x00" + \
        struct.pack("<h", device.tag("SCADA").attribute[0])


def test_live_server_survives_garbage_and_still_answers():
    rng = random.Random(99)
    seeds = valid_messages()
    device = Device.from_specs(["SCADA=INT[100]", "Text=STRING[2]"])
    with serve_in_thread(device) as srv:
        good = Wire(srv.port)
        sent = connections = 0
        while sent < 3000 and connections < 400:  # until enough frames went out, bounded
            connections += 1
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
                sock.settimeout(0.05)
                sock.sendall(encapsulation.encode(0x65, encapsulation.register_session_data()))
                for _ in range(75):
                    frame = mutate(rng, rng.choice(seeds)) if rng.random() < 0.8 else \
                        bytes(rng.randrange(256) for _ in range(rng.randint(1, 100)))
                    try:
                        sock.sendall(frame)
                        sent += 1
                    except OSError:
                        break
                try:
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(500):
                udp.sendto(mutate(rng, rng.choice(seeds[-3:])), ("127.0.0.1", srv.port))
                sent += 1
        assert sent >= 3000
        assert good.routed(read("SCADA", 0)).status == 0  # an old session still works
        fresh = Wire(srv.port)
        assert fresh.routed(read("SCADA", 1)).status == 0
        fresh.close()
        good.close()


# --- hypothesis properties ---------------------------------------------------------------

segments = st.one_of(
    st.builds(Logical, st.sampled_from(["class", "instance", "element", "attribute", "connection_point"]),
              st.integers(0, 0xFFFFFFFF)),
    st.builds(Symbolic, st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)),
    st.builds(Port, st.integers(1, 0xFFFF), st.one_of(st.integers(0, 255), st.ip_addresses(v=4).map(str))),
)


@given(st.lists(segments, max_size=6))
def test_epath_round_trip(path):
    path = tuple(path)
    assert epath.decode(epath.encode(path)) == path


@given(st.integers(0, 0x7F), st.lists(segments, max_size=4), st.binary(max_size=64))
def test_request_round_trip(service, path, data):
    request = cip.Request(service, tuple(path), data)
    assert cip.Request.decode(request.encode()) == request


@given(st.integers(0, 0x7F), st.integers(0, 255), st.lists(st.integers(0, 0xFFFF), max_size=4),
       st.binary(max_size=64))
def test_reply_round_trip(service, status, ext, data):
    reply = cip.Reply(service, status, tuple(ext), data)
    assert cip.Reply.decode(reply.encode()) == reply


@given(st.sampled_from(sorted(cip_types.TYPES)), st.data())
def test_types_round_trip(name, data):
    ctype = cip_types.TYPES[name]
    if isinstance(ctype, cip_types.NumericType):
        if ctype.fmt in "fd":
            width = 32 if ctype.fmt == "f" else 64
            values = data.draw(st.lists(st.floats(allow_nan=False, width=width), max_size=8))
        elif ctype.fmt == "?":
            values = data.draw(st.lists(st.booleans(), max_size=8))
        else:
            values = data.draw(st.lists(st.integers(int(ctype.low), int(ctype.high)), max_size=8))
    else:
        limit = 82 if name == "STRING" else 255
        values = data.draw(st.lists(st.text(st.characters(max_codepoint=255), max_size=limit), max_size=4))
    assert ctype.decode(ctype.encode(values)) == values


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_any_bytes_only_raise_codec_error(data):
    for decoder in DECODERS:
        try:
            decoder(data)
        except CodecError:
            pass


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_dispatcher_never_raises(data):
    device = Device.from_specs(["SCADA=INT[10]"])
    reply = Dispatcher(device).unconnected(data, Session())
    cip.Reply.decode(reply)
