"""CIP Message Router requests and replies, and the Connection Manager / Message Router services
that wrap other requests (CIP Vol 1, 2-4 and 3-5).

Message Router request and reply::

    request:  service (USINT) | path size in words (USINT) | path | request data
    reply:    service|0x80 (USINT) | 0 | general status (USINT) | ext. status size in words
              (USINT) | ext. status (UINT each) | reply data

Unconnected Send (0x52 to @6/1): priority/tick, timeout ticks, message size (UINT), message,
[pad], route path size (USINT), reserved, route path.  Forward Open (0x54) / Large Forward
Open (0x5B) / Forward Close (0x4E): see the record docstrings.  Multiple Service Packet (0x0A
to @2/1): count (UINT), offsets (UINT, from the count), then the requests (or replies).

>>> Request(0x0E, (Logical("class", 1), Logical("instance", 1), Logical("attribute", 7))).encode()
b'\\x0e\\x03 \\x01$\\x010\\x07'
>>> Reply.decode(b'\\x8e\\x00\\x00\\x00\\x05ABCDE').data
b'\\x05ABCDE'
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cpppo.enip.codec import epath
from cpppo.enip.codec.epath import Logical, Segment
from cpppo.enip.codec.errors import CodecError

__all__ = [
    "CONNECTION_MANAGER_PATH",
    "MESSAGE_ROUTER_PATH",
    "STATUS_TEXT",
    "ForwardClose",
    "ForwardCloseReply",
    "ForwardOpen",
    "ForwardOpenFailure",
    "ForwardOpenReply",
    "GetAttributeList",
    "Reply",
    "Request",
    "Service",
    "ServiceError",
    "Status",
    "UnconnectedSend",
    "decode_multiple",
    "encode_attribute_list_reply",
    "encode_multiple",
    "encode_request",
    "split_request",
    "unconnected_sender",
]


class Service:
    """Service codes (the reply code is ``code | 0x80``)."""

    GET_ATTRIBUTES_ALL = 0x01
    SET_ATTRIBUTES_ALL = 0x02
    GET_ATTRIBUTE_LIST = 0x03
    SET_ATTRIBUTE_LIST = 0x04
    RESET = 0x05
    MULTIPLE_SERVICE_PACKET = 0x0A
    GET_ATTRIBUTE_SINGLE = 0x0E
    SET_ATTRIBUTE_SINGLE = 0x10
    READ_TAG = 0x4C
    WRITE_TAG = 0x4D
    READ_MODIFY_WRITE_TAG = 0x4E
    FORWARD_CLOSE = 0x4E  # at the Connection Manager
    READ_TAG_FRAGMENTED = 0x52
    UNCONNECTED_SEND = 0x52  # at the Connection Manager
    WRITE_TAG_FRAGMENTED = 0x53
    FORWARD_OPEN = 0x54
    GET_INSTANCE_ATTRIBUTE_LIST = 0x55
    LARGE_FORWARD_OPEN = 0x5B


class Status:
    """General status codes (CIP Vol 1, Appendix B) and a few extended ones."""

    SUCCESS = 0x00
    CONNECTION_FAILURE = 0x01
    RESOURCE_UNAVAILABLE = 0x02
    INVALID_PARAMETER_VALUE = 0x03
    PATH_SEGMENT_ERROR = 0x04
    PATH_DESTINATION_UNKNOWN = 0x05
    PARTIAL_TRANSFER = 0x06
    SERVICE_NOT_SUPPORTED = 0x08
    INVALID_ATTRIBUTE_VALUE = 0x09
    ATTRIBUTE_LIST_ERROR = 0x0A
    ALREADY_IN_STATE = 0x0B
    OBJECT_STATE_CONFLICT = 0x0C
    ATTRIBUTE_NOT_SETTABLE = 0x0E
    PRIVILEGE_VIOLATION = 0x0F
    NOT_ENOUGH_DATA = 0x13
    ATTRIBUTE_NOT_SUPPORTED = 0x14
    TOO_MUCH_DATA = 0x15
    OBJECT_DOES_NOT_EXIST = 0x16
    EMBEDDED_SERVICE_ERROR = 0x1E
    INVALID_PARAMETER = 0x20
    GENERAL_ERROR = 0xFF  # Logix: with an extended status saying what
    # extended status words
    EXT_DUPLICATE_FORWARD_OPEN = 0x0100
    EXT_CONNECTION_NOT_FOUND = 0x0107
    EXT_INVALID_SEGMENT = 0x0315
    EXT_INVALID_PORT = 0x0311
    EXT_INVALID_LINK = 0x0312
    EXT_TOO_MANY_CONNECTIONS = 0x0113
    EXT_BAD_TYPE = 0x2107  # Logix: type in request does not match the tag's type
    EXT_OUT_OF_RANGE = 0x2105  # Logix: beyond the end of the array


#: what each general status means, as clients report it
STATUS_TEXT = {
    0x01: "Connection failure", 0x02: "Resource unavailable", 0x03: "Invalid parameter value",
    0x04: "Path segment error", 0x05: "Path destination unknown", 0x06: "Partial transfer",
    0x08: "Service not supported", 0x09: "Invalid attribute value", 0x0C: "Object state conflict",
    0x0E: "Attribute not settable", 0x10: "Device state conflict", 0x11: "Reply data too large",
    0x13: "Not enough data", 0x14: "Attribute not supported", 0x15: "Too much data",
    0x16: "Object does not exist", 0x1E: "Embedded service error", 0x1F: "Vendor specific error",
    0x20: "Invalid parameter", 0x26: "Path size invalid", 0xFF: "General error",
}


CONNECTION_MANAGER_PATH = (Logical("class", 6), Logical("instance", 1))
MESSAGE_ROUTER_PATH = (Logical("class", 2), Logical("instance", 1))


@dataclass(frozen=True, slots=True)
class Request:
    """A Message Router request."""

    service: int
    path: tuple[Segment, ...] = ()
    data: bytes = b""

    def encode(self) -> bytes:
        return encode_request(self.service, epath.encode_sized(self.path), self.data)

    @classmethod
    def decode(cls, message: bytes) -> Request:
        if len(message) < 2:
            raise CodecError(f"CIP request of {len(message)} bytes is too short")
        if message[0] & 0x80:
            raise CodecError(f"service 0x{message[0]:02x} is a reply, not a request")
        path, end = epath.decode_sized(message, 1)
        return cls(message[0], path, bytes(message[end:]))


def split_request(message: bytes) -> tuple[int, bytes, bytes]:
    """``(service, raw path bytes, data)`` without decoding the path (for path caches)."""
    if len(message) < 2:
        raise CodecError(f"CIP request of {len(message)} bytes is too short")
    end = 2 + message[1] * 2
    if end > len(message):
        raise CodecError(f"path size {message[1]} words exceeds the {len(message) - 2} bytes left")
    if message[0] & 0x80:
        raise CodecError(f"service 0x{message[0]:02x} is a reply, not a request")
    return message[0], bytes(message[2:end]), bytes(message[end:])


@dataclass(frozen=True, slots=True)
class Reply:
    """A Message Router reply; ``service`` is the request's service code (without 0x80)."""

    service: int
    status: int = 0
    ext_status: tuple[int, ...] = ()
    data: bytes = b""

    def encode(self) -> bytes:
        head = bytes((self.service | 0x80, 0, self.status & 0xFF, len(self.ext_status)))
        if self.ext_status:
            head += struct.pack(f"<{len(self.ext_status)}H", *self.ext_status)
        return head + self.data

    @classmethod
    def decode(cls, message: bytes) -> Reply:
        if len(message) < 4:
            raise CodecError(f"CIP reply of {len(message)} bytes is too short")
        if not message[0] & 0x80:
            raise CodecError(f"service 0x{message[0]:02x} is a request, not a reply")
        size = message[3]
        end = 4 + size * 2
        if end > len(message):
            raise CodecError(f"extended status of {size} words runs past the end of the reply")
        ext = struct.unpack_from(f"<{size}H", message, 4) if size else ()
        return cls(message[0] & 0x7F, message[2], tuple(ext), bytes(message[end:]))

    @property
    def ok(self) -> bool:
        return self.status in (0, Status.PARTIAL_TRANSFER)

    @property
    def sts(self) -> int | tuple[int, tuple[int, ...]]:
        """The status as upstream's 6-tuples carry it: the general status, or with extended
        status words ``(general, (ext, ...))``."""
        return (self.status, self.ext_status) if self.ext_status else self.status


def encode_request(service: int, sized_path: bytes, data: bytes = b"") -> bytes:
    """A Message Router request from its service, its already encoded sized path
    (``epath.encode_sized``) and its data: what ``Request.encode`` produces, for callers that
    cache the encoded paths of the tags they use again and again.

    >>> encode_request(0x4C, epath.encode_sized((epath.Symbolic("SCADA"),)), b"\\x01\\x00").hex()
    '4c0491055343414441000100'
    """
    return bytes((service,)) + sized_path + data


@dataclass(frozen=True, slots=True)
class UnconnectedSend:
    """Unconnected Send request data (service 0x52 at the Connection Manager)."""

    message: bytes
    route_path: tuple[Segment, ...] = ()
    priority: int = 0x0A
    timeout_ticks: int = 0x05

    def encode(self) -> bytes:
        out = bytes((self.priority, self.timeout_ticks)) + struct.pack("<H", len(self.message)) + self.message
        if len(self.message) % 2:
            out += b"\0"
        route = epath.encode(self.route_path)
        return out + bytes((len(route) // 2, 0)) + route

    def request(self) -> Request:
        return Request(Service.UNCONNECTED_SEND, CONNECTION_MANAGER_PATH, self.encode())

    @classmethod
    def decode(cls, data: bytes) -> UnconnectedSend:
        if len(data) < 4:
            raise CodecError(f"Unconnected Send data of {len(data)} bytes is too short")
        priority, ticks, size = struct.unpack_from("<BBH", data)
        end = 4 + size
        if end > len(data):
            raise CodecError(f"Unconnected Send message size {size} runs past the end")
        message = bytes(data[4:end])
        if size % 2:
            end += 1
        if end == len(data):  # some clients omit the route path entirely
            return cls(message, (), priority, ticks)
        if end + 2 > len(data):
            raise CodecError("Unconnected Send route path size is truncated")
        route_end = end + 2 + data[end] * 2
        if route_end != len(data):
            raise CodecError(f"Unconnected Send route path size {data[end]} words does not match the "
                             f"{len(data) - end - 2} bytes left")
        return cls(message, epath.decode(data[end + 2:route_end]), priority, ticks)


_SIZE = struct.Struct("<H")


def unconnected_sender(route_path: tuple[Segment, ...] = (),
                       path: tuple[Segment, ...] = CONNECTION_MANAGER_PATH,
                       priority: int = 0x0A, timeout_ticks: int = 0x05) -> Callable[[bytes], bytes]:
    """A function wrapping messages in the same Unconnected Send request to ``path``: the
    parts that do not depend on the message are encoded once.  ``sender(message)`` equals
    ``Request(0x52, path, UnconnectedSend(message, route_path, priority, timeout_ticks).encode())
    .encode()``.

    >>> send = unconnected_sender((epath.Port(1, 0),), priority=5, timeout_ticks=157)
    >>> send(b"\\x0e\\x00").hex()
    '520220062401059d02000e0001000100'
    """
    head = encode_request(Service.UNCONNECTED_SEND, epath.encode_sized(path),
                          bytes((priority, timeout_ticks)))
    route = epath.encode(route_path)
    tail = bytes((len(route) // 2, 0)) + route
    size = _SIZE.pack

    def send(message: bytes) -> bytes:
        return head + size(len(message)) + message + (b"\0" if len(message) & 1 else b"") + tail
    return send


_FO_HEAD = struct.Struct("<BBIIHHIB3x")


@dataclass(frozen=True, slots=True)
class ForwardOpen:
    """Forward Open (0x54; ``large`` = Large Forward Open 0x5B, with 32-bit connection params).

    Layout: priority/tick, timeout ticks, O->T connection ID, T->O connection ID, connection
    serial (UINT), originator vendor (UINT), originator serial (UDINT), timeout multiplier,
    3 reserved, O->T RPI (UDINT), O->T parameters (WORD or DWORD), T->O RPI, T->O parameters,
    transport class/trigger, connection path size (words), connection path."""

    o_t_connection: int = 0
    t_o_connection: int = 0
    serial: int = 0
    vendor: int = 0
    originator_serial: int = 0
    multiplier: int = 0
    o_t_rpi: int = 2_000_000
    o_t_params: int = 0x43F4
    t_o_rpi: int = 2_000_000
    t_o_params: int = 0x43F4
    transport: int = 0xA3
    path: tuple[Segment, ...] = ()
    priority: int = 0x0A
    timeout_ticks: int = 0x0E
    large: bool = False

    @property
    def connection_size(self) -> int:
        """The O->T connection size in bytes (9 bits normally, 16 bits for Large)."""
        return self.o_t_params & (0xFFFF if self.large else 0x01FF)

    def encode(self) -> bytes:
        params = "<IIIIB" if self.large else "<IHIHB"
        try:
            head = _FO_HEAD.pack(self.priority, self.timeout_ticks, self.o_t_connection, self.t_o_connection,
                                 self.serial, self.vendor, self.originator_serial, self.multiplier)
            body = struct.pack(params, self.o_t_rpi, self.o_t_params, self.t_o_rpi, self.t_o_params,
                               self.transport)
        except struct.error as exc:
            raise CodecError(f"Forward Open field out of range: {exc}") from None
        return head + body + epath.encode_sized(self.path)

    def request(self) -> Request:
        service = Service.LARGE_FORWARD_OPEN if self.large else Service.FORWARD_OPEN
        return Request(service, CONNECTION_MANAGER_PATH, self.encode())

    @classmethod
    def decode(cls, data: bytes, large: bool = False) -> ForwardOpen:
        params = struct.Struct("<IIIIB" if large else "<IHIHB")
        if len(data) < _FO_HEAD.size + params.size + 1:
            kind = "Large Forward Open" if large else "Forward Open"
            raise CodecError(f"{kind} data of {len(data)} bytes is too short")
        prio, ticks, o_t, t_o, serial, vendor, oserial, mult = _FO_HEAD.unpack_from(data)
        o_rpi, o_par, t_rpi, t_par, transport = params.unpack_from(data, _FO_HEAD.size)
        path, end = epath.decode_sized(data, _FO_HEAD.size + params.size)
        if end != len(data):
            raise CodecError(f"{len(data) - end} bytes follow the Forward Open connection path")
        return cls(o_t, t_o, serial, vendor, oserial, mult, o_rpi, o_par, t_rpi, t_par, transport, path,
                   prio, ticks, large)


@dataclass(frozen=True, slots=True)
class ForwardOpenReply:
    """Successful Forward Open reply data."""

    o_t_connection: int
    t_o_connection: int
    serial: int
    vendor: int
    originator_serial: int
    o_t_api: int
    t_o_api: int
    application: bytes = b""

    def encode(self) -> bytes:
        return struct.pack("<IIHHIIIBx", self.o_t_connection, self.t_o_connection, self.serial, self.vendor,
                           self.originator_serial, self.o_t_api, self.t_o_api,
                           len(self.application) // 2) + self.application

    @classmethod
    def decode(cls, data: bytes) -> ForwardOpenReply:
        if len(data) < 26:
            raise CodecError(f"Forward Open reply of {len(data)} bytes is too short")
        fields = struct.unpack_from("<IIHHIIIBx", data)
        app = data[26:26 + fields[7] * 2]
        if len(app) != fields[7] * 2:
            raise CodecError("Forward Open reply application data is truncated")
        return cls(*fields[:7], bytes(app))


@dataclass(frozen=True, slots=True)
class ForwardOpenFailure:
    """Unsuccessful Forward Open / Forward Close reply data."""

    serial: int
    vendor: int
    originator_serial: int
    remaining_path: int = 0

    def encode(self) -> bytes:
        return struct.pack("<HHIBx", self.serial, self.vendor, self.originator_serial, self.remaining_path)

    @classmethod
    def decode(cls, data: bytes) -> ForwardOpenFailure:
        if len(data) < 10:
            raise CodecError(f"Forward Open failure data of {len(data)} bytes is too short")
        return cls(*struct.unpack_from("<HHIB", data))


@dataclass(frozen=True, slots=True)
class ForwardClose:
    """Forward Close (0x4E at the Connection Manager): priority/tick, timeout ticks, serial,
    vendor, originator serial, path size (words), reserved, connection path."""

    serial: int
    vendor: int
    originator_serial: int
    path: tuple[Segment, ...] = ()
    priority: int = 0x0A
    timeout_ticks: int = 0x0E

    def encode(self) -> bytes:
        route = epath.encode(self.path)
        return struct.pack("<BBHHIBx", self.priority, self.timeout_ticks, self.serial, self.vendor,
                           self.originator_serial, len(route) // 2) + route

    def request(self) -> Request:
        return Request(Service.FORWARD_CLOSE, CONNECTION_MANAGER_PATH, self.encode())

    @classmethod
    def decode(cls, data: bytes) -> ForwardClose:
        if len(data) < 12:
            raise CodecError(f"Forward Close data of {len(data)} bytes is too short")
        prio, ticks, serial, vendor, oserial, size = struct.unpack_from("<BBHHIB", data)
        if 12 + size * 2 != len(data):
            raise CodecError(f"Forward Close path size {size} words does not match {len(data) - 12} bytes")
        return cls(serial, vendor, oserial, epath.decode(data[12:]), prio, ticks)


@dataclass(frozen=True, slots=True)
class ForwardCloseReply:
    serial: int
    vendor: int
    originator_serial: int
    application: bytes = b""

    def encode(self) -> bytes:
        return struct.pack("<HHIBx", self.serial, self.vendor, self.originator_serial,
                           len(self.application) // 2) + self.application

    @classmethod
    def decode(cls, data: bytes) -> ForwardCloseReply:
        if len(data) < 10:
            raise CodecError(f"Forward Close reply of {len(data)} bytes is too short")
        serial, vendor, oserial, size = struct.unpack_from("<HHIB", data)
        return cls(serial, vendor, oserial, bytes(data[10:10 + size * 2]))


def encode_multiple(messages: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Multiple Service Packet data (requests or replies): count, offsets, messages."""
    count = len(messages)
    offset = 2 + 2 * count
    offsets = []
    for message in messages:
        offsets.append(offset)
        offset += len(message)
    if offset > 0xFFFF:
        raise CodecError(f"Multiple Service Packet of {offset} bytes is too long")
    return struct.pack(f"<H{count}H", count, *offsets) + b"".join(messages)


def decode_multiple(data: bytes) -> list[bytes]:
    """Split Multiple Service Packet data into its messages (raises CodecError)."""
    if len(data) < 2:
        raise CodecError("Multiple Service Packet is missing its count")
    count = struct.unpack_from("<H", data)[0]
    table_end = 2 + 2 * count
    if count == 0 or table_end > len(data):
        raise CodecError(f"Multiple Service Packet count {count} does not fit its {len(data)} bytes")
    offsets = [*struct.unpack_from(f"<{count}H", data, 2), len(data)]
    messages = []
    for n in range(count):
        start, end = offsets[n], offsets[n + 1]
        if not table_end <= start < end <= len(data):
            raise CodecError(f"Multiple Service Packet offset {n} ({start}) is out of order or out of range")
        messages.append(bytes(data[start:end]))
    return messages


class ServiceError(Exception):
    """Raised by service handlers to produce an error reply: general + extended status."""

    def __init__(self, status: int, ext_status: tuple[int, ...] = (), reason: str = "") -> None:
        super().__init__(reason or f"CIP status 0x{status:02x}")
        self.status = status
        self.ext_status = tuple(ext_status)
        self.reason = reason or f"CIP status 0x{status:02x}"


@dataclass(frozen=True, slots=True)
class GetAttributeList:
    """Get Attribute List (0x03) request data: a count (UINT), then that many attribute ids
    (UINT).  ``decode`` raises ServiceError with the status a server answers a wrong length
    with (0x13 not enough data, 0x15 too much).

    >>> GetAttributeList((1, 7)).encode().hex()
    '020001000700'
    >>> encode_attribute_list_reply([(1, 0, b"\\x01\\x00"), (9, Status.ATTRIBUTE_NOT_SUPPORTED, b"")]).hex()
    '020001000000010009001400'
    """

    attributes: tuple[int, ...]

    def encode(self) -> bytes:
        return struct.pack(f"<H{len(self.attributes)}H", len(self.attributes), *self.attributes)

    @classmethod
    def decode(cls, data: bytes) -> GetAttributeList:
        if len(data) < 2:
            raise ServiceError(Status.NOT_ENOUGH_DATA)
        count = struct.unpack_from("<H", data)[0]
        if len(data) != 2 + 2 * count:
            raise ServiceError(Status.NOT_ENOUGH_DATA if len(data) < 2 + 2 * count else Status.TOO_MUCH_DATA)
        return cls(struct.unpack_from(f"<{count}H", data, 2))


def encode_attribute_list_reply(answers: Sequence[tuple[int, int, bytes]]) -> bytes:
    """Get Attribute List reply data: the count, then per attribute ``(id, status, value)``
    its id and status (UINTs) and, when the status is 0, its value."""
    out = bytearray(struct.pack("<H", len(answers)))
    for attribute, status, value in answers:
        out += struct.pack("<HH", attribute, status) + (value if status == 0 else b"")
    return bytes(out)
