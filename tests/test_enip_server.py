"""The EtherNet/IP server on real loopback sockets, driven with our codec: encapsulation
commands and their error statuses, Unconnected Send routing, Multiple Service Packet,
Forward Open / SendUnitData, attribute services, tag errors, limits and delays."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from cpppo.enip.codec import cip, cpf, encapsulation, logix
from cpppo.enip.codec.encapsulation import Command
from cpppo.enip.codec.epath import Logical, Port, Symbolic
from cpppo.enip.device.model import DEFAULT_TCPIP, Device
from cpppo.enip.server.background import serve_in_thread
from cpppo.enip.server.transport import Settings

BACKPLANE = (Port(1, 0),)
TAGS = ["SCADA=INT[1000]", "Motor_Speed=REAL", "Tag@22/1/1=DINT[4]", "Text=STRING[2]", "Short=SSTRING[3]",
        "Flag=BOOL", "Big=LINT[2]"]


class Wire:
    """A minimal blocking EtherNet/IP client over our codec, for tests."""

    def __init__(self, port: int, register: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.session = 0
        if register:
            header, _ = self.exchange(Command.REGISTER_SESSION, encapsulation.register_session_data())
            assert header.status == 0
            self.session = header.session

    def send(self, command: int, payload: bytes = b"", session: int | None = None) -> None:
        self.sock.sendall(encapsulation.encode(command, payload, context=b"ctx12345",
                                               session=self.session if session is None else session))

    def receive(self) -> tuple[encapsulation.Header, bytes]:
        buffer = b""
        while True:
            consumed, header, payload = encapsulation.decode(buffer)
            if consumed:
                assert consumed == len(buffer)
                return header, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer += chunk

    def exchange(self, command: int, payload: bytes = b"", session: int | None = None):
        self.send(command, payload, session)
        return self.receive()

    def rr(self, request: bytes) -> cip.Reply:
        header, payload = self.exchange(Command.SEND_RR_DATA, cpf.encode_rr_data(request))
        assert header.status == 0 and header.context == b"ctx12345"
        return cip.Reply.decode(cpf.decode_rr_data(payload).data)

    def routed(self, request: cip.Request, route: tuple = BACKPLANE) -> cip.Reply:
        return self.rr(cip.UnconnectedSend(request.encode(), route).request().encode())

    def close(self) -> None:
        self.sock.close()


def read(name: str, element: int | None = None, count: int = 1) -> cip.Request:
    path = (Symbolic(name),) + ((Logical("element", element),) if element is not None else ())
    return cip.Request(cip.Service.READ_TAG, path, logix.ReadTag(count).encode())


def write(name: str, element: int | None, code: int, count: int, data: bytes, handle=None) -> cip.Request:
    path = (Symbolic(name),) + ((Logical("element", element),) if element is not None else ())
    return cip.Request(cip.Service.WRITE_TAG, path, logix.WriteTag(code, count, data, handle).encode())


def attribute(cls: int, inst: int, attr: int, service=cip.Service.GET_ATTRIBUTE_SINGLE, data=b""):
    return cip.Request(service, (*instance(cls, inst), Logical("attribute", attr)), data)


def instance(cls: int, inst: int) -> tuple[Logical, Logical]:
    return Logical("class", cls), Logical("instance", inst)


@pytest.fixture(scope="module")
def device() -> Device:
    return Device.from_specs(TAGS, identity={"product_name": "Test PLC", "serial_number": 0x1234})


@pytest.fixture(scope="module")
def server(device):
    with serve_in_thread(device) as srv:
        yield srv


@pytest.fixture
def wire(server):
    w = Wire(server.port)
    yield w
    w.close()


def test_read_write_routed_and_direct(wire, device):
    assert wire.routed(write("SCADA", 1, 0xC3, 3, struct.pack("<3h", 7, -8, 9))).status == 0
    reply = wire.routed(read("SCADA", 0, 4))
    assert reply.status == 0 and reply.data == struct.pack("<H4h", 0xC3, 0, 7, -8, 9)
    assert wire.rr(read("SCADA", 2).encode()).data == struct.pack("<Hh", 0xC3, -8)  # no Unconnected Send
    assert device.tag("scada").attribute[1:4] == [7, -8, 9]  # names are case-insensitive
    assert wire.routed(write("Motor_Speed", None, 0xCA, 1, struct.pack("<f", 1.5))).status == 0
    assert wire.routed(read("motor_speed")).data == struct.pack("<Hf", 0xCA, 1.5)
    assert wire.routed(write("Big", 1, 0xC5, 1, struct.pack("<q", -(2**40)))).status == 0
    assert wire.routed(read("Big", 0, 2)).data == struct.pack("<Hqq", 0xC5, 0, -(2**40))


def test_write_accepts_extra_data_and_cip_strings(wire, device):
    # pycomm3 sends more bytes than elements x size: the extra is ignored
    assert wire.routed(write("SCADA", 10, 0xC3, 1, struct.pack("<2h", 5, 6))).status == 0
    assert device.tag("SCADA").attribute[10:12] == [5, 0]
    # Logix STRING: served as 0xA0 + handle 0x0FCE; writes as the structure or as CIP STRING 0xD0
    assert wire.routed(write("Text", 0, 0xA0, 1, logix_string("struct"), 0x0FCE)).status == 0
    assert wire.routed(write("Text", 1, 0xD0, 1, b"\x03\x00abc\x00")).status == 0
    reply = wire.routed(read("Text", 0, 2))
    assert reply.data[:4] == bytes.fromhex("a002ce0f") and len(reply.data) == 4 + 2 * 88
    assert device.tag("Text").attribute[0:2] == ["struct", "abc"]
    assert wire.routed(write("Short", 2, 0xDA, 1, b"\x02hi")).status == 0
    assert wire.routed(read("Short", 2)).data == b"\xda\x00\x02hi"


def logix_string(text: str) -> bytes:
    return struct.pack("<i", len(text)) + text.encode().ljust(84, b"\0")


@pytest.mark.parametrize(("request_", "status", "ext"), [
    (read("Nope"), 0x04, ()),                                          # unknown tag
    (read("SCADA", 1000), 0xFF, (0x2105,)),                            # element beyond the end
    (read("SCADA", 998, 5), 0xFF, (0x2105,)),                          # range beyond the end
    (write("SCADA", 0, 0xC4, 1, b"\0\0\0\0"), 0xFF, (0x2107,)),       # wrong type
    (write("SCADA", 0, 0xC3, 2, b"\0\0"), 0x13, ()),                   # not enough data
    (cip.Request(0x4C, (Symbolic("SCADA"),), b"\x01"), 0x20, ()),      # bad request data
    (cip.Request(0x33, (Symbolic("SCADA"),)), 0x08, ()),               # unsupported service
    (attribute(1, 1, 99), 0x14, ()),                                   # no such attribute
    (attribute(0x77, 1, 1), 0x05, ()),                                 # no such object
    (attribute(1, 1, 1, cip.Service.SET_ATTRIBUTE_SINGLE, b"\x05\x00"), 0x0E, ()),  # not settable
    (attribute(22, 1, 1, cip.Service.SET_ATTRIBUTE_SINGLE, b"\0" * 20), 0x15, ()),  # too much data
])
def test_error_statuses(wire, request_, status, ext):
    reply = wire.routed(request_)
    assert (reply.status, reply.ext_status) == (status, ext)
    assert wire.routed(read("SCADA", 0)).status == 0  # the session goes on


def test_attribute_services(wire):
    assert wire.routed(attribute(1, 1, 7)).data == b"\x08Test PLC"
    assert wire.routed(attribute(1, 1, 6)).data == struct.pack("<I", 0x1234)
    everything = wire.routed(cip.Request(cip.Service.GET_ATTRIBUTES_ALL, instance(1, 1)))
    vendor, dtype, code, _, _, _, serial, size = struct.unpack_from("<HHHBBHIB", everything.data)
    assert (vendor, dtype, code, serial, everything.data[15:15 + size]) == (1, 14, 54, 0x1234, b"Test PLC")
    set_two = attribute(22, 1, 1, cip.Service.SET_ATTRIBUTE_SINGLE, struct.pack("<2i", 3, 4))
    assert wire.routed(set_two).status == 0
    assert wire.routed(attribute(22, 1, 1)).data == struct.pack("<4i", 3, 4, 0, 0)
    # numerically addressed tags answer Read Tag too (the spec's SCADA@22/1/1 form)
    tag_read = cip.Request(0x4C, (*instance(22, 1), Logical("attribute", 1)), b"\x02\x00")
    assert wire.routed(tag_read).data == struct.pack("<H2i", 0xC4, 3, 4)
    two = struct.pack("<3H", 2, 1, 0x63)
    listing = wire.routed(cip.Request(cip.Service.GET_ATTRIBUTE_LIST, instance(0xF5, 1), two))
    assert listing.data == struct.pack("<HHHIHH", 2, 1, 0, 2, 0x63, 0x14)
    assert wire.routed(attribute(0xF6, 1, 3)).data == bytes.fromhex("020000000001")
    assert wire.routed(attribute(0xF5, 1, 4)).data == bytes.fromhex("0200 20f6 2401")


def test_multiple_service_packet(wire):
    requests = [read("SCADA", 0, 2).encode(), read("Nope").encode(), attribute(1, 1, 1).encode()]
    msp = cip.Request(cip.Service.MULTIPLE_SERVICE_PACKET, cip.MESSAGE_ROUTER_PATH,
                      cip.encode_multiple(requests))
    reply = wire.routed(msp)
    assert reply.status == 0x1E  # an embedded service failed
    replies = [cip.Reply.decode(r) for r in cip.decode_multiple(reply.data)]
    assert [r.status for r in replies] == [0, 0x04, 0] and replies[2].data == b"\x01\x00"


def test_tag_list_and_fragmented_read(wire):
    listing = wire.routed(cip.Request(cip.Service.GET_INSTANCE_ATTRIBUTE_LIST,
                                      (Logical("class", 0x6B), Logical("instance", 0)),
                                      logix.GetInstanceAttributeList((1, 2, 8)).encode()))
    entries = logix.decode_symbol_entries(listing.data, (1, 2, 8))
    assert listing.status == 0 and [e.name for e in entries] == [t.split("@")[0].split("=")[0] for t in TAGS]
    assert entries[0].symbol_type == 0x20C3 and entries[0].dimensions == (1000, 0, 0)
    assert entries[3].symbol_type == 0xAFCE  # STRING array: structure + template 0x0FCE
    data, offset = b"", 0
    for _ in range(10):
        request = cip.Request(cip.Service.READ_TAG_FRAGMENTED, (Symbolic("SCADA"),),
                              logix.ReadTagFragmented(1000, offset).encode())
        reply = wire.routed(request)
        assert reply.status in (0, 6) and reply.data[:2] == b"\xc3\x00"
        data += reply.data[2:]
        offset = len(data)
        if reply.status == 0:
            break
    assert len(data) == 2000
    # and a large write in fragments that do not align to elements
    image = struct.pack("<1000h", *range(1000))
    for start in range(0, 2000, 333):
        chunk = image[start:start + 333]
        frag = logix.WriteTagFragmented(0xC3, 1000, start, chunk)
        request = cip.Request(cip.Service.WRITE_TAG_FRAGMENTED, (Symbolic("SCADA"),), frag.encode())
        assert wire.routed(request).status == 0
    assert wire.routed(read("SCADA", 990, 10)).data[2:] == struct.pack("<10h", *range(990, 1000))


def test_encapsulation_errors_keep_the_session(server):
    wire = Wire(server.port)
    try:
        assert wire.exchange(0x0999)[0].status == 0x0001                     # unsupported command
        header, _ = wire.exchange(Command.SEND_RR_DATA, cpf.encode_rr_data(read("SCADA").encode()), session=1)
        assert header.status == 0x0064                                       # invalid session handle
        assert wire.exchange(Command.SEND_RR_DATA, b"\x00\x01")[0].status == 0x0003  # bad format
        assert wire.exchange(Command.REGISTER_SESSION, b"\x01")[0].status == 0x0003  # bad length
        assert wire.exchange(Command.REGISTER_SESSION, b"\x02\x00\x00\x00")[0].status == 0x0069
        wire.send(Command.NOP, b"ignored")                                  # NOP: no reply
        assert wire.routed(read("SCADA", 0)).status == 0
    finally:
        wire.close()


def test_list_commands_tcp_and_udp(server):
    wire = Wire(server.port, register=False)
    try:
        header, payload = wire.exchange(Command.LIST_IDENTITY)
        item = cpf.IdentityItem.decode(cpf.decode_items(payload)[0].data)
        assert (item.product_name, item.serial_number, item.sin_port) == ("Test PLC", 0x1234, server.port)
        services = cpf.decode_items(wire.exchange(Command.LIST_SERVICES)[1])
        assert cpf.CommunicationsService.decode(services[0].data).name == "Communications"
        assert cpf.decode_items(wire.exchange(Command.LIST_INTERFACES)[1]) == ()
        legacy = cpf.decode_items(wire.exchange(Command.LEGACY)[1])[0]
        assert legacy.type_id == 1 and cpf.LegacyItem.decode(legacy.data).ip_address == "127.0.0.1"
    finally:
        wire.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        for command in (Command.LIST_IDENTITY, Command.LEGACY, Command.REGISTER_SESSION):
            udp.sendto(encapsulation.encode(command, context=b"udp-ctx!"), ("127.0.0.1", server.port))
            _, header, payload = encapsulation.decode(udp.recv(2048))
            assert header.context == b"udp-ctx!"
            if command == Command.LIST_IDENTITY:
                assert cpf.IdentityItem.decode(cpf.decode_items(payload)[0].data).product_name == "Test PLC"
            elif command == Command.REGISTER_SESSION:
                assert header.status == 0x0001  # sessions are TCP only


def test_forward_open_and_connected_messaging(wire):
    fo = cip.ForwardOpen(t_o_connection=0x5555, serial=7, vendor=0x1337, originator_serial=42,
                         o_t_params=0x42000FA2, t_o_params=0x42000FA2, large=True,
                         path=(Port(1, 0), Logical("class", 2), Logical("instance", 1)))
    reply = wire.rr(fo.request().encode())
    opened = cip.ForwardOpenReply.decode(reply.data)
    assert reply.status == 0 and opened.t_o_connection == 0x5555 and opened.serial == 7
    assert wire.rr(fo.request().encode()).ext_status == (0x0100,)  # duplicate
    big = read("SCADA", 0, 1000).encode()
    unit_data = cpf.encode_unit_data(opened.o_t_connection, 9, big)
    header, payload = wire.exchange(Command.SEND_UNIT_DATA, unit_data)
    unit = cpf.decode_unit_data(payload)
    assert header.status == 0 and (unit.connection, unit.sequence) == (0x5555, 9)
    assert len(cip.Reply.decode(unit.data).data) == 2 + 2000  # a 4000-byte connection carries it whole
    header, _ = wire.exchange(Command.SEND_UNIT_DATA, cpf.encode_unit_data(0xBAD, 1, big))
    assert header.status == 0x0003
    close = cip.ForwardClose(7, 0x1337, 42, fo.path)
    assert wire.rr(close.request().encode()).status == 0
    assert wire.rr(close.request().encode()).ext_status == (0x0107,)


def test_route_path_checking():
    device = Device.from_specs(["X=DINT"], route_path="1/3")
    simple = Device.from_specs(["X=DINT"], simple=True)
    with serve_in_thread(device, udp=False) as srv, serve_in_thread(simple, udp=False) as srv_simple:
        wire, wire_simple = Wire(srv.port), Wire(srv_simple.port)
        try:
            assert wire.routed(read("X"), (Port(1, 3),)).status == 0
            assert wire.routed(read("X"), (Port(1, 0),)).ext_status == (0x0312,)
            assert wire.routed(read("X"), (Port(2, 3),)).ext_status == (0x0311,)
            assert wire.routed(read("X"), ()).status == 0x01
            assert wire_simple.rr(read("X").encode()).status == 0
            assert wire_simple.routed(read("X"), ()).status == 0
            assert wire_simple.routed(read("X"), (Port(1, 0),)).status == 0x01
        finally:
            wire.close()
            wire_simple.close()


def test_limits_oversize_connections_idle_and_delay():
    settings = Settings(max_connections=2, max_payload=512, idle_timeout=0.3)
    device = Device.from_specs(["X=INT"])
    with serve_in_thread(device, udp=False, settings=settings, delay=(0.01, 0.02)) as srv:
        evicted, second = Wire(srv.port), Wire(srv.port)
        first = Wire(srv.port)  # over the limit: evicts the connection idle the longest
        with pytest.raises((ConnectionError, OSError)):
            evicted.exchange(Command.LIST_IDENTITY)
        assert srv.evictions == 1
        first.send(Command.SEND_RR_DATA, b"\0" * 1000)
        header, _ = first.receive()
        assert header.status == 0x0065
        with pytest.raises((ConnectionError, OSError)):
            first.receive()  # closed after an oversized frame
        assert second.routed(read("X")).status == 0  # delayed, but answered
        time.sleep(0.8)
        with pytest.raises((ConnectionError, OSError)):
            second.exchange(Command.LIST_IDENTITY)  # closed after idling
        for wire in (evicted, first, second):
            wire.close()


def test_device_from_specs_errors():
    for bad in (["X"], ["X=FOO"], ["X=INT[0]"], ["X=INT[x]"], ["X@1/2=INT"], ["X=INT", "x=DINT"]):
        with pytest.raises(ValueError, match=r"X|x"):
            Device.from_specs(bad)
    with pytest.raises(ValueError, match="identity"):
        Device.from_specs(["X=INT"], identity={"colour": "red"})
    with pytest.raises(ValueError, match="route path"):
        Device.from_specs(["X=INT"], route_path="1/x.y")


def test_standard_objects_made_at_the_first_look():
    """A fleet's devices are mostly read by tag and listed: their forty standard Attributes are
    made when something first looks at ``objects``, and answer as if made at once."""
    device = Device.from_specs(["Level=REAL"], identity={"product_name": "Lazy PLC"})
    with serve_in_thread(device) as srv:
        wire = Wire(srv.port)
        try:
            assert wire.routed(read("Level")).status == 0
            item = cpf.IdentityItem.decode(cpf.decode_items(wire.exchange(Command.LIST_IDENTITY)[1])[0].data)
            assert item.product_name == "Lazy PLC"
            assert device._standard  # a read and List Identity made none of them
            renamed = attribute(1, 1, 7, cip.Service.SET_ATTRIBUTE_SINGLE, b"\x07Renamed")
            assert wire.routed(renamed).status == 0
            assert not device._standard
            item = cpf.IdentityItem.decode(cpf.decode_items(wire.exchange(Command.LIST_IDENTITY)[1])[0].data)
            assert item.product_name == "Renamed"
        finally:
            wire.close()
    # what they refuse is refused when the device is built, as before
    with pytest.raises(ValueError, match="already in use"):
        Device.from_specs(["Name@1/1/7=SSTRING"])
    with pytest.raises(ValueError, match="mac_address"):
        Device.from_specs(["X=INT"], tcpip={"mac_address": "nonsense"})
    lazy, eager = Device.from_specs(["X=INT"]), Device.from_specs(["X=INT"], tcpip=dict(DEFAULT_TCPIP))
    assert lazy._standard and not eager._standard
    assert ({where: {n: a.value for n, a in attrs.items()} for where, attrs in lazy.objects.items()}
            == {where: {n: a.value for n, a in attrs.items()} for where, attrs in eager.objects.items()})


def test_many_devices_in_one_process():
    import asyncio

    from cpppo.enip.server.transport import serve

    async def scenario() -> list[tuple[int, bytes]]:
        servers = []
        for n in range(30):
            device = Device.from_specs([f"Unit{n}=DINT", "SCADA=INT[10]"],
                                       identity={"serial_number": 1000 + n})
            device.tag("SCADA").attribute[0:1] = [n]
            servers.append(await serve(device, f"127.0.42.{n + 1}", 0, udp=n % 2 == 0))
        results = []
        for n, srv in enumerate(servers):
            reader, writer = await asyncio.open_connection(f"127.0.42.{n + 1}", srv.port)
            writer.write(encapsulation.encode(Command.LIST_IDENTITY))
            head = await reader.readexactly(24)
            payload = await reader.readexactly(struct.unpack_from("<H", head, 2)[0])
            identity = cpf.IdentityItem.decode(cpf.decode_items(payload)[0].data)
            register = encapsulation.register_session_data()
            writer.write(encapsulation.encode(Command.REGISTER_SESSION, register))
            head = await reader.readexactly(28)
            session = struct.unpack_from("<I", head, 4)[0]
            request = cip.UnconnectedSend(read("SCADA", 0).encode(), BACKPLANE).request().encode()
            frame = encapsulation.encode(Command.SEND_RR_DATA, cpf.encode_rr_data(request), session=session)
            writer.write(frame)
            head = await reader.readexactly(24)
            body = await reader.readexactly(struct.unpack_from("<H", head, 2)[0])
            results.append((identity.serial_number, cip.Reply.decode(cpf.decode_rr_data(body).data).data))
            writer.close()
        for srv in servers:
            srv.close()
            await srv.wait_closed()
        return results

    results = asyncio.run(scenario())
    assert results == [(1000 + n, struct.pack("<Hh", 0xC3, n)) for n in range(30)]


def test_fd_limit_error_is_clear():
    import resource

    from cpppo.server.hosting import ensure_fd_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ensure_fd_limit(min(soft, 64)) == soft
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(OSError, match="ulimit"):
            ensure_fd_limit(hard + 1)
