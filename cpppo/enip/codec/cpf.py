"""Common Packet Format (CIP Vol 2, 2-6) and the bodies that carry it.

A CPF list is ``count (UINT)`` then ``count`` items of ``type_id (UINT), length (UINT), data``.
SendRRData and SendUnitData prefix the list with ``interface handle (UDINT), timeout (UINT)``.
List Identity (item 0x0C), List Services (item 0x100) and the Legacy 0x0001 item have records
here; their socket addresses are big-endian ``struct sockaddr_in`` (family, port, address, 8
zero bytes).

>>> encode_items([Item(NULL_ADDRESS), Item(UNCONNECTED_DATA, b"\\x0e\\x03")])
b'\\x02\\x00\\x00\\x00\\x00\\x00\\xb2\\x00\\x02\\x00\\x0e\\x03'
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from cpppo.enip.codec.encapsulation import Command
from cpppo.enip.codec.errors import CodecError

__all__ = [
    "CONNECTED_ADDRESS", "CONNECTED_DATA", "LEGACY_ADDRESS", "LIST_IDENTITY", "LIST_SERVICES",
    "NULL_ADDRESS", "SOCKADDR_O_T", "SOCKADDR_T_O", "UNCONNECTED_DATA",
    "CommunicationsService", "IdentityItem", "Item", "LegacyItem", "RRData", "UnitData",
    "decode_items", "decode_rr_data", "decode_unit_data", "encode_items", "encode_rr_data",
    "encode_unit_data", "rr_frame", "rr_message",
]

NULL_ADDRESS = 0x0000
LEGACY_ADDRESS = 0x0001
LIST_IDENTITY = 0x000C
CONNECTED_ADDRESS = 0x00A1
CONNECTED_DATA = 0x00B1
UNCONNECTED_DATA = 0x00B2
LIST_SERVICES = 0x0100
SOCKADDR_O_T = 0x8000
SOCKADDR_T_O = 0x8001

_ITEM = struct.Struct("<HH")
_RR = struct.Struct("<IH")
_RR_DATA = struct.Struct("<IHHHHHH")  # interface, timeout, 2 items: null address (empty), unconnected data
_SOCKADDR = struct.Struct(">hHI8s")


@dataclass(frozen=True, slots=True)
class Item:
    """One CPF item."""

    type_id: int
    data: bytes = b""


def encode_items(items: list[Item] | tuple[Item, ...]) -> bytes:
    out = bytearray(struct.pack("<H", len(items)))
    for item in items:
        if len(item.data) > 0xFFFF:
            raise CodecError(f"CPF item of {len(item.data)} bytes is too long")
        out += _ITEM.pack(item.type_id, len(item.data)) + item.data
    return bytes(out)


def decode_items(data: bytes, offset: int = 0) -> tuple[Item, ...]:
    """Decode a CPF list at ``offset``; it must end exactly at the end of ``data``."""
    if len(data) - offset < 2:
        raise CodecError("CPF list is missing its item count")
    count = struct.unpack_from("<H", data, offset)[0]
    i = offset + 2
    items = []
    for n in range(count):
        if i + 4 > len(data):
            raise CodecError(f"CPF item {n} of {count} is truncated")
        type_id, length = _ITEM.unpack_from(data, i)
        i += 4
        if i + length > len(data):
            raise CodecError(f"CPF item {n} (type 0x{type_id:04x}) length {length} runs past the end")
        items.append(Item(type_id, bytes(data[i:i + length])))
        i += length
    if i != len(data):
        raise CodecError(f"{len(data) - i} bytes follow the {count} CPF items")
    return tuple(items)


@dataclass(frozen=True, slots=True)
class RRData:
    """A SendRRData body: an unconnected request or reply (``data`` from the 0xB2 item)."""

    data: bytes
    timeout: int = 0
    interface: int = 0
    items: tuple[Item, ...] = ()  # any other items (Sockaddr Info of a Forward Open)


def encode_rr_data(data: bytes, timeout: int = 0, interface: int = 0,
                   extra: tuple[Item, ...] | list[Item] = ()) -> bytes:
    """A SendRRData body: null address, unconnected data, then any ``extra`` items.

    >>> items = (Item(NULL_ADDRESS), Item(UNCONNECTED_DATA, b"\\x01"))
    >>> encode_rr_data(b"\\x01", 5, 1) == _RR.pack(1, 5) + encode_items(items)
    True
    """
    if not extra and len(data) <= 0xFFFF:  # the common case, in one pack
        return _RR_DATA.pack(interface, timeout, 2, NULL_ADDRESS, 0, UNCONNECTED_DATA, len(data)) + data
    return _RR.pack(interface, timeout) + encode_items((Item(NULL_ADDRESS), Item(UNCONNECTED_DATA, data),
                                                        *extra))


def decode_rr_data(payload: bytes) -> RRData:
    """The CIP message of a SendRRData payload (null address item + unconnected data item).

    >>> decode_rr_data(encode_rr_data(b"\\x0e\\x00", 5, 1))
    RRData(data=b'\\x0e\\x00', timeout=5, interface=1, items=())
    """
    if len(payload) >= 16:  # the common case, those two items only: in one unpack
        interface, timeout, count, null, nlen, kind, size = _RR_DATA.unpack_from(payload)
        if count == 2 and null == NULL_ADDRESS and nlen == 0 and kind == UNCONNECTED_DATA \
                and len(payload) == 16 + size:
            return RRData(bytes(payload[16:]), timeout, interface)
    if len(payload) < 6:
        raise CodecError(f"SendRRData payload of {len(payload)} bytes is too short")
    interface, timeout = _RR.unpack_from(payload)
    items = decode_items(payload, 6)
    data = [it for it in items if it.type_id == UNCONNECTED_DATA]
    if len(data) != 1:
        raise CodecError("SendRRData must carry exactly one unconnected data item (0xB2)")
    others = tuple(it for it in items if it.type_id not in (NULL_ADDRESS, UNCONNECTED_DATA))
    return RRData(data[0].data, timeout, interface, others)


# A client's hot path: a SendRRData frame (header, interface, timeout and the two CPF items)
# packed in one go, and a reply's message unpacked without intermediate records; both are
# byte for byte what encapsulation.encode(SEND_RR_DATA, encode_rr_data(...)) and
# decode_rr_data produce and accept.
_RR_FRAME = struct.Struct("<HHIIQIIHHHHHH")
_RR_REPLY = struct.Struct("<IHHHHHH")


def rr_frame(message: bytes, session: int, context: int) -> bytes:
    """``encapsulation.encode(SEND_RR_DATA, encode_rr_data(message), session=session,
    context=context as 8 little-endian bytes)``.

    >>> rr_frame(b"\\x0e\\x00", 7, 9).hex()
    '6f0012000700000000000000090000000000000000000000000000000000020000000000b20002000e00'
    """
    size = len(message)
    return _RR_FRAME.pack(Command.SEND_RR_DATA, 16 + size, session, 0, context, 0,
                          0, 0, 2, NULL_ADDRESS, 0, UNCONNECTED_DATA, size) + message


def rr_message(payload: bytes) -> bytes:
    """The CIP message of a SendRRData payload: ``decode_rr_data(payload).data``."""
    if len(payload) >= 16:
        _i, _t, count, null, nlen, kind, size = _RR_REPLY.unpack_from(payload)
        if count == 2 and null == NULL_ADDRESS and nlen == 0 and kind == UNCONNECTED_DATA \
                and len(payload) == 16 + size:
            return payload[16:]
    return decode_rr_data(payload).data


@dataclass(frozen=True, slots=True)
class UnitData:
    """A SendUnitData body: connected message on ``connection`` with ``sequence`` number."""

    connection: int
    sequence: int
    data: bytes
    interface: int = 0
    timeout: int = 0


def encode_unit_data(connection: int, sequence: int, data: bytes) -> bytes:
    return _RR.pack(0, 0) + encode_items((
        Item(CONNECTED_ADDRESS, struct.pack("<I", connection)),
        Item(CONNECTED_DATA, struct.pack("<H", sequence & 0xFFFF) + data)))


def decode_unit_data(payload: bytes) -> UnitData:
    if len(payload) < 6:
        raise CodecError(f"SendUnitData payload of {len(payload)} bytes is too short")
    interface, timeout = _RR.unpack_from(payload)
    items = decode_items(payload, 6)
    address = [it for it in items if it.type_id == CONNECTED_ADDRESS]
    data = [it for it in items if it.type_id == CONNECTED_DATA]
    if len(address) != 1 or len(address[0].data) != 4:
        raise CodecError("SendUnitData must carry one 4-byte connected address item (0xA1)")
    if len(data) != 1 or len(data[0].data) < 2:
        raise CodecError("SendUnitData must carry one connected data item (0xB1) with a sequence number")
    connection = struct.unpack("<I", address[0].data)[0]
    sequence = struct.unpack_from("<H", data[0].data)[0]
    return UnitData(connection, sequence, data[0].data[2:], interface, timeout)


def _sockaddr(host: str, port: int) -> bytes:
    try:
        return _SOCKADDR.pack(2, port, int(ipaddress.IPv4Address(host)), b"\0" * 8)
    except (ValueError, struct.error) as exc:
        raise CodecError(f"bad socket address {host}:{port}: {exc}") from None


def _from_sockaddr(data: bytes, offset: int) -> tuple[int, int, str]:
    family, port, addr, _zero = _SOCKADDR.unpack_from(data, offset)
    return family, port, str(ipaddress.IPv4Address(addr))


@dataclass(frozen=True, slots=True)
class IdentityItem:
    """The List Identity reply item (type 0x0C)."""

    vendor_id: int = 1
    device_type: int = 14
    product_code: int = 54
    revision: tuple[int, int] = (20, 11)
    status: int = 0x0030
    serial_number: int = 0
    product_name: str = ""
    state: int = 3
    sin_addr: str = "0.0.0.0"
    sin_port: int = 44818
    sin_family: int = 2
    version: int = 1

    def encode(self) -> bytes:
        name = self.product_name.encode("iso-8859-1", "replace")[:255]
        try:
            return (struct.pack("<H", self.version) + _sockaddr(self.sin_addr, self.sin_port)
                    + struct.pack("<HHHBBHIB", self.vendor_id, self.device_type, self.product_code,
                                  self.revision[0], self.revision[1], self.status, self.serial_number,
                                  len(name))
                    + name + bytes([self.state]))
        except struct.error as exc:
            raise CodecError(f"identity field out of range: {exc}") from None

    @classmethod
    def decode(cls, data: bytes) -> IdentityItem:
        if len(data) < 34:
            raise CodecError(f"List Identity item of {len(data)} bytes is too short")
        version = struct.unpack_from("<H", data)[0]
        family, port, addr = _from_sockaddr(data, 2)
        vendor, dtype, code, major, minor, status, serial, size = struct.unpack_from("<HHHBBHIB", data, 18)
        if len(data) != 33 + size + 1:
            raise CodecError(f"List Identity item length {len(data)} does not match its name length {size}")
        name = data[33:33 + size].decode("iso-8859-1")
        return cls(vendor, dtype, code, (major, minor), status, serial, name, data[33 + size], addr,
                   port, family, version)


@dataclass(frozen=True, slots=True)
class CommunicationsService:
    """The List Services reply item (type 0x100): 0x120 = CIP over TCP + class 0/1 over UDP."""

    capability: int = 0x0120
    name: str = "Communications"
    version: int = 1

    def encode(self) -> bytes:
        name = self.name.encode("ascii")[:15].ljust(16, b"\0")
        return struct.pack("<HH", self.version, self.capability) + name

    @classmethod
    def decode(cls, data: bytes, strict: bool = True) -> CommunicationsService:
        """``strict=False`` accepts any name length, as clients must: some devices (and
        upstream cpppo) send a 15-byte name, not 16."""
        if len(data) != 20 and (strict or len(data) < 4):
            raise CodecError(f"List Services item must be 20 bytes, not {len(data)}")
        version, capability = struct.unpack_from("<HH", data)
        return cls(capability, data[4:].split(b"\0", 1)[0].decode("ascii", "replace"), version)


@dataclass(frozen=True, slots=True)
class LegacyItem:
    """The undocumented Legacy 0x0001 reply item: version, unknown, sockaddr, dotted-quad text."""

    sin_addr: str = "0.0.0.0"
    sin_port: int = 44818
    version: int = 1
    unknown_1: int = 0
    sin_family: int = 2

    def encode(self) -> bytes:
        return (struct.pack("<HH", self.version, self.unknown_1) + _sockaddr(self.sin_addr, self.sin_port)
                + self.sin_addr.encode("ascii").ljust(16, b"\0"))

    @property
    def ip_address(self) -> str:
        return self.sin_addr

    @classmethod
    def decode(cls, data: bytes) -> LegacyItem:
        if len(data) != 36:
            raise CodecError(f"Legacy 0x0001 item must be 36 bytes, not {len(data)}")
        version, unknown = struct.unpack_from("<HH", data)
        family, port, addr = _from_sockaddr(data, 4)
        return cls(addr, port, version, unknown, family)
