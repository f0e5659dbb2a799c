"""The one client engine: sans-IO (requests out, canned replies in) and the same behaviour
through both of its faces, the blocking ``connector`` and the asyncio ``AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from cpppo.enip.client import engine as engine_mod
from cpppo.enip.client.aclient import AsyncClient
from cpppo.enip.client.connector import connector, parse_operations
from cpppo.enip.client.engine import Engine, check
from cpppo.enip.client.wire import ENIPError, ENIPStatusError
from cpppo.enip.codec import cip, cpf, encapsulation, epath, logix, types
from cpppo.enip.codec.cip import Reply, Service, Status
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread

ROUTE = [{"port": 1, "link": 0}]
SEND = [{"class": 6}, {"instance": 1}]
#: what a Logix controller takes in one unconnected request
UNCONNECTED_LIMIT = 504


def ops(*tags: str) -> list[dict[str, Any]]:
    return list(parse_operations(tags))


def inner(message: bytes) -> cip.Request:
    """The request inside an Unconnected Send."""
    outer = cip.Request.decode(message)
    assert outer.service == Service.UNCONNECTED_SEND and outer.path == cip.CONNECTION_MANAGER_PATH
    return cip.Request.decode(cip.UnconnectedSend.decode(outer.data).message)


def reply(service: int, data: bytes = b"", status: int = 0, ext: tuple[int, ...] = ()) -> bytes:
    return Reply(service, status, ext, data).encode()


# --- sans-IO ---------------------------------------------------------------------------

def test_read_request_bytes_and_result() -> None:
    eng = Engine(ops("SCADA[1]"))
    assert eng.ready()
    assert eng.issue(1).hex() == "4c05910553434144410028010100"  # service, 5 words, "SCADA" padded, [1], 1
    assert not eng.ready() and eng.inflight == 1
    assert eng.receive(2, b"") is False  # not ours
    assert eng.receive(1, reply(Service.READ_TAG, bytes.fromhex("c3000700")))
    (idx, dsc, req, rpy, sts, val), = eng.results()
    assert (idx, dsc, sts, val) == (0, "Single Read Tag", 0, [7])
    assert rpy.read_tag.data == [7] and req["path"] == [{"symbolic": "SCADA"}, {"element": 1}]
    assert not eng.ready() and not eng.inflight


def test_requests_are_routed_through_unconnected_send() -> None:
    message = Engine(ops("SCADA[1]"), route_path=ROUTE, send_path=SEND).issue(1)
    path = (epath.Symbolic("SCADA"), epath.Logical("element", 1))
    assert inner(message) == cip.Request(Service.READ_TAG, path, logix.ReadTag(1).encode())
    send = cip.UnconnectedSend.decode(cip.Request.decode(message).data)
    assert send.route_path == (epath.Port(1, 0),) and (send.priority, send.timeout_ticks) == (5, 157)


def test_multiple_service_packets_and_depth() -> None:
    eng = Engine(ops("A", "B", "C", "D"), multiple=250, depth=2)
    bundle = cip.Request.decode(eng.issue(1))
    assert bundle.service == Service.MULTIPLE_SERVICE_PACKET and bundle.path == cip.MESSAGE_ROUTER_PATH
    requests = [cip.Request.decode(m) for m in cip.decode_multiple(bundle.data)]
    assert [r.path[0].name for r in requests] == ["A", "B", "C", "D"]
    assert not eng.ready()  # nothing left to send
    answers = [reply(Service.READ_TAG, bytes.fromhex("c400") + n.to_bytes(4, "little")) for n in range(3)]
    answers.append(reply(Service.READ_TAG, status=Status.PATH_SEGMENT_ERROR))
    eng.receive(1, reply(Service.MULTIPLE_SERVICE_PACKET, cip.encode_multiple(answers),
                         Status.EMBEDDED_SERVICE_ERROR))
    results = eng.results()
    assert [r[5] for r in results] == [[0], [1], [2], None]
    assert [r[4] for r in results] == [0, 0, 0, Status.PATH_SEGMENT_ERROR]
    assert results[0][1] == "Multiple Read Tag"
    with pytest.raises(ENIPStatusError, match="D: Status 0x04 \\(Path segment error\\)"):
        check(results[3], "D")


def test_partial_reads_continue_with_read_tag_fragmented() -> None:
    eng = Engine(ops("BIG[0-9]"))
    first = cip.Request.decode(eng.issue(1))
    assert first.service == Service.READ_TAG and logix.ReadTag.decode(first.data).elements == 10
    values = types.INT.encode(list(range(10)))
    eng.receive(1, reply(Service.READ_TAG, b"\xc3\x00" + values[:8], Status.PARTIAL_TRANSFER))
    assert eng.results() == [] and eng.ready()
    second = cip.Request.decode(eng.issue(2))
    assert second.service == Service.READ_TAG_FRAGMENTED
    assert logix.ReadTagFragmented.decode(second.data) == logix.ReadTagFragmented(10, 8)
    eng.receive(2, reply(Service.READ_TAG_FRAGMENTED, b"\xc3\x00" + values[8:]))
    (result,) = eng.results()
    assert result[5] == list(range(10)) and result[4] == 0


def test_large_writes_go_as_fragments_within_the_unconnected_limit() -> None:
    data = list(range(1000))  # 2,000 bytes of INT
    eng = Engine(ops(f"BIG[0-999]=(INT){','.join(map(str, data))}"), route_path=ROUTE, send_path=SEND)
    sent, key = [], 0
    while eng.ready():
        key += 1
        message = eng.issue(key)
        sent.append(message)
        eng.receive(key, reply(Service.WRITE_TAG_FRAGMENTED))
    assert len(sent) == 5 and all(len(m) <= UNCONNECTED_LIMIT for m in sent)
    pieces = [logix.WriteTagFragmented.decode(inner(m).data) for m in sent]
    assert all(inner(m).service == Service.WRITE_TAG_FRAGMENTED for m in sent)
    assert {p.elements for p in pieces} == {1000} and [p.offset for p in pieces] == [0, 440, 880, 1320, 1760]
    assert types.INT.decode(b"".join(p.data for p in pieces)) == data
    (result,) = eng.results()
    assert result[4] == 0 and result[5] is True and result[1] == "Single Write Frag"


def test_text_falls_back_to_cip_string_and_is_learned() -> None:
    class Connection:
        string_type = None

    conn = Connection()
    eng = Engine(ops('TEXT="hello"', "COUNT"), learned=conn)
    probe = cip.Request.decode(eng.issue(1))
    write = logix.WriteTag.decode(probe.data)
    assert (write.type_code, write.handle) == (types.STRUCT, types.STRING_HANDLE)
    assert not eng.ready()  # a probe travels alone: nothing overtakes it
    eng.receive(1, reply(Service.WRITE_TAG, status=Status.GENERAL_ERROR, ext=(Status.EXT_BAD_TYPE,)))
    retry = logix.WriteTag.decode(cip.Request.decode(eng.issue(2)).data)
    assert retry.type_code == types.STRING.code and retry.data == types.encode_padded_strings(["hello"])
    eng.receive(2, reply(Service.WRITE_TAG))
    assert conn.string_type == types.STRING.code
    assert eng.results()[0][4:] == (0, True)
    eng.issue(3)
    eng.receive(3, reply(Service.READ_TAG, bytes.fromhex("c3000100")))
    assert eng.results()[0][5] == [1]
    again = Engine(ops('TEXT="x"'), learned=conn)  # later writes go as CIP STRING at once
    assert logix.WriteTag.decode(cip.Request.decode(again.issue(1)).data).type_code == types.STRING.code


def test_encapsulation_errors_and_malformed_replies() -> None:
    eng = Engine(ops("A"))
    eng.issue(1)
    eng.receive(1, b"", status=0x65)
    (result,) = eng.results()
    assert result[4] == ("EtherNet/IP", 0x65)
    with pytest.raises(ENIPStatusError, match="A: EtherNet/IP status 0x65"):
        check(result, "A")
    eng = Engine(ops("A"))
    eng.issue(1)
    with pytest.raises(engine_mod.wire.CodecError):
        eng.receive(1, b"\xcc")
    eng = Engine(ops("A"))
    eng.issue(1)
    eng.receive(1, reply(Service.READ_TAG))  # success, but no typed data
    with pytest.raises(ENIPError, match="reply carries no data"):
        check(eng.results()[0], "A")


def test_unknown_methods_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown operation method"):
        Engine([{"path": [{"symbolic": "A"}], "method": "explode"}]).ready()


# --- the same behaviour through both faces ---------------------------------------------------

TAGS = ["BIG=INT[1000]", "TEXT=STRING[3]", "COUNT=DINT", "FLOAT=REAL"]


class BlockingFace:
    def __init__(self, host: str, port: int, **kwds: Any) -> None:
        self.conn = connector(host=host, port=port, timeout=5.0)
        self.kwds = kwds

    def run(self, tag: str, what: str) -> Any:
        (result,) = self.conn.pipeline(parse_operations([tag]), depth=2, **self.kwds)
        return check(result, what)

    def read(self, tag: str) -> list[Any]:
        return self.run(tag, f"Read {tag}")

    def write(self, tag: str) -> None:
        self.run(tag, f"Write {tag}")

    def close(self) -> None:
        self.conn.close()


class AsyncFace:
    def __init__(self, host: str, port: int, **kwds: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = AsyncClient(host, port, timeout=5.0, **kwds)
        self.loop.run_until_complete(self.client.connect())

    def read(self, tag: str) -> list[Any]:
        value = self.loop.run_until_complete(self.client.read(tag))
        return value if isinstance(value, list) else [value]

    def write(self, tag: str) -> None:
        self.loop.run_until_complete(self.client.write(tag, None))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


FACES = {"blocking": BlockingFace, "asyncio": AsyncFace}


@pytest.fixture(scope="module")
def device() -> Iterator[tuple[Device, int]]:
    dev = Device.from_specs(TAGS)
    with serve_in_thread(dev) as server:
        yield dev, server.port


@pytest.fixture(params=sorted(FACES))
def face(request, device) -> Iterator[Any]:
    made = FACES[request.param]("127.0.0.1", device[1])
    yield made
    made.close()


@pytest.fixture()
def sent(monkeypatch) -> list[bytes]:
    """Every CIP message the engine hands a face to send."""
    messages: list[bytes] = []
    issue = Engine.issue

    def spy(self: Engine, key: int) -> bytes:
        message = issue(self, key)
        messages.append(message)
        return message

    monkeypatch.setattr(Engine, "issue", spy)
    return messages


def test_large_write_and_read(face, device, sent) -> None:
    data = [(n * 7) % 30000 for n in range(1000)]
    face.write(f"BIG[0-999]=(INT){','.join(map(str, data))}")
    assert device[0].tag("BIG").attribute[0:1000] == data
    assert len(sent) == 5 and all(len(m) <= UNCONNECTED_LIMIT for m in sent)
    assert {inner(m).service for m in sent} == {Service.WRITE_TAG_FRAGMENTED}
    sent.clear()
    assert face.read("BIG[0-999]") == data
    assert [inner(m).service for m in sent][:2] == [Service.READ_TAG, Service.READ_TAG_FRAGMENTED]


def test_text_values(face, device) -> None:
    face.write('TEXT[0-1]="one","two"')
    assert face.read("TEXT[0-1]") == ["one", "two"]
    assert device[0].tag("TEXT").attribute[0:2] == ["one", "two"]


def test_scalars_and_errors(face) -> None:
    face.write("COUNT=(DINT)-5")
    face.write("FLOAT=(REAL)2.5")
    assert face.read("COUNT") == [-5] and face.read("FLOAT") == [2.5]
    with pytest.raises(ENIPStatusError, match="Read NOPE: Status 0x04"):
        face.read("NOPE")
    with pytest.raises(ENIPStatusError, match="0x2107"):
        face.write("COUNT=(INT)1")
    assert face.read("COUNT") == [-5]  # the session survives error replies


@pytest.mark.parametrize("name", sorted(FACES))
def test_route_paths(name) -> None:
    routed = Device.from_specs(["COUNT=DINT"], route_path="1/3")
    simple = Device.from_specs(["COUNT=DINT"], simple=True)
    with serve_in_thread(routed) as a, serve_in_thread(simple) as b:
        wrong = FACES[name]("127.0.0.1", a.port)
        right = FACES[name]("127.0.0.1", a.port, route_path=[{"port": 1, "link": 3}])
        bare = FACES[name]("127.0.0.1", b.port, **({"simple": True} if name == "asyncio" else
                                                   {"send_path": "", "route_path": False}))
        try:
            with pytest.raises(ENIPStatusError, match="Read COUNT: Status 0x01"):
                wrong.read("COUNT")
            assert right.read("COUNT") == [0] and bare.read("COUNT") == [0]
        finally:
            for made in (wrong, right, bare):
                made.close()


# --- what AsyncClient puts on the wire -------------------------------------------------------

def test_asyncclient_sends_a_2000_byte_write_as_fragments_on_the_wire() -> None:
    """A relay between AsyncClient and the server records the bytes the client sends: a
    2,000-byte write goes as Write Tag Fragmented requests, each Unconnected Send within
    what a Logix takes (504 bytes), and the device ends up holding the data."""
    dev = Device.from_specs(["BIG=INT[1000]"])
    data = [(n * 13) % 32000 - 16000 for n in range(1000)]  # 2,000 bytes of INT
    sent = bytearray()

    async def scenario(port: int) -> list[Any]:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
                while chunk := await src.read(65536):
                    if record:
                        sent.extend(chunk)
                    dst.write(chunk)
                    await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

        relay_server = await asyncio.start_server(relay, "127.0.0.1", 0)
        relay_port = relay_server.sockets[0].getsockname()[1]
        try:
            async with AsyncClient("127.0.0.1", relay_port, timeout=5.0) as client:
                await client.write("BIG[0-999]", data, tag_type="INT")
                return await client.read("BIG[0-999]")
        finally:
            relay_server.close()

    with serve_in_thread(dev) as server:
        assert asyncio.run(scenario(server.port)) == data
    assert dev.tag("BIG").attribute[0:1000] == data
    frames, buffer = [], bytes(sent)
    while buffer:
        used, header, payload = encapsulation.decode(buffer)
        assert used, "the client sent a partial frame"
        frames.append((header.command, payload))
        buffer = buffer[used:]
    assert frames[0][0] == encapsulation.Command.REGISTER_SESSION
    messages = [cpf.decode_rr_data(p).data for c, p in frames if c == encapsulation.Command.SEND_RR_DATA]
    writes = [m for m in messages if inner(m).service != Service.READ_TAG
              and inner(m).service != Service.READ_TAG_FRAGMENTED]
    assert len(writes) == 5 and all(len(m) <= UNCONNECTED_LIMIT for m in writes)
    assert {inner(m).service for m in writes} == {Service.WRITE_TAG_FRAGMENTED}
    pieces = [logix.WriteTagFragmented.decode(inner(m).data) for m in writes]
    assert [p.offset for p in pieces] == [0, 440, 880, 1320, 1760] and {p.elements for p in pieces} == {1000}
    assert types.INT.decode(b"".join(p.data for p in pieces)) == data
