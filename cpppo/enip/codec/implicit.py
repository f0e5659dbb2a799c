"""Implicit (Class 0/1) I/O: the UDP packet, the Forward Open connection parameters, and the
Sockaddr Info item (CIP Vol 1, 3-5.4; Vol 2, 2-6 and 3-3.9).

A Class 0/1 packet on UDP (port 2222 by default) is a CPF list with no encapsulation header::

    +--------+--------+--------+------------+------------+--------+--------+------------+
    | count  | 0x8002 | 8      | connection | encap. seq | 0x00B1 | length | data ...   |
    | UINT=2 | UINT   | UINT   | UDINT      | UDINT      | UINT   | UINT   |            |
    +--------+--------+--------+------------+------------+--------+--------+------------+

Class 1 data starts with a 16-bit CIP sequence count; O->T data then usually carries the
32-bit real-time header (bit 0: 1 = run, 0 = idle) before the application data.  The
connection size in the Forward Open counts the sequence count and the header
(:func:`encode_data` / :func:`decode_data`).  Both ends drop a packet whose encapsulation
sequence number is not ahead of the last one taken (:func:`sequence_gap`).

>>> packet = encode_packet(0x1234, 7, b"\\x01\\x00abc")
>>> decode_packet(packet)
Packet(connection=4660, sequence=7, data=b'\\x01\\x00abc')
>>> NetworkParams.decode(0x4806, large=False)
NetworkParams(size=6, variable=False, priority=2, kind=2, redundant=False)
>>> decode_data(encode_data(3, b"ab", run=True), header=True)
(3, True, b'ab')
>>> sequence_gap(7, 10), sequence_gap(7, 7), sequence_gap(7, 6)
(2, None, None)
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from cpppo.enip.codec.errors import CodecError

__all__ = [
    "IO_PORT", "MULTICAST", "NULL", "POINT_TO_POINT", "RPI_ACCEPTABLE", "RPI_MAXIMUM", "RPI_MINIMUM",
    "SEQUENCED_ADDRESS",
    "NetworkParams", "Packet", "Sockaddr", "Transport",
    "decode_data", "decode_packet", "decode_sockaddr", "encode_data", "encode_packet", "encode_sockaddr",
    "rpi_refusal_words", "sequence_gap", "timeout_multiplier",
]

IO_PORT = 2222
SEQUENCED_ADDRESS = 0x8002
CONNECTED_DATA = 0x00B1
NULL, MULTICAST, POINT_TO_POINT = 0, 1, 2  # network connection types

_HEAD = struct.Struct("<HHHIIHH")  # count, 0x8002, 8, connection, sequence, 0x00B1, length
_SOCKADDR = struct.Struct(">hHI8s")
_COUNT = struct.Struct("<H")  # the CIP sequence count of Class 1 data
_COUNT_HEADER = struct.Struct("<HI")  # ... and the 32-bit run/idle header
#: how far ahead an encapsulation sequence number may jump and still be this connection's
SEQUENCE_WINDOW = 0x10000


@dataclass(frozen=True, slots=True)
class Packet:
    """One Class 0/1 packet: the connection id, the encapsulation sequence number, the data
    (for Class 1: CIP sequence count, then [32-bit header,] application data)."""

    connection: int
    sequence: int
    data: bytes


def encode_packet(connection: int, sequence: int, data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise CodecError(f"I/O data of {len(data)} bytes is too long")
    return _HEAD.pack(2, SEQUENCED_ADDRESS, 8, connection & 0xFFFFFFFF, sequence & 0xFFFFFFFF,
                      CONNECTED_DATA, len(data)) + data


def decode_packet(packet: bytes) -> Packet:
    """The sequenced address and connected data items of a UDP I/O packet (raises CodecError)."""
    if len(packet) < _HEAD.size:
        raise CodecError(f"I/O packet of {len(packet)} bytes is too short")
    count, kind, size, connection, sequence, data_kind, length = _HEAD.unpack_from(packet)
    if count != 2 or kind != SEQUENCED_ADDRESS or size != 8:
        raise CodecError(f"I/O packet must start with 2 items, the first a sequenced address "
                         f"(count {count}, item 0x{kind:04x}, length {size})")
    if data_kind != CONNECTED_DATA:
        raise CodecError(f"I/O packet's second item is 0x{data_kind:04x}, not connected data (0x00B1)")
    if _HEAD.size + length != len(packet):
        raise CodecError(f"I/O data length {length} does not match the {len(packet) - _HEAD.size} bytes")
    return Packet(connection, sequence, bytes(packet[_HEAD.size:]))


def encode_data(count: int, data: bytes = b"", run: bool | None = None) -> bytes:
    """Class 1 data: the 16-bit CIP sequence ``count``, then (when ``run`` is given) the 32-bit
    run/idle header (bit 0: 1 = run), then the application ``data``."""
    if run is None:
        return _COUNT.pack(count & 0xFFFF) + data
    return _COUNT_HEADER.pack(count & 0xFFFF, 1 if run else 0) + data


def decode_data(data: bytes, header: bool) -> tuple[int, bool | None, bytes]:
    """``(CIP sequence count, run bit, application data)`` of Class 1 data; the run bit is
    None when the data carries no run/idle ``header`` (raises CodecError if too short)."""
    if len(data) < (6 if header else 2):
        raise CodecError(f"Class 1 data of {len(data)} bytes is too short")
    count = _COUNT.unpack_from(data)[0]
    if header:
        return count, bool(data[2] & 1), data[6:]
    return count, None, data[2:]


def sequence_gap(last: int, sequence: int) -> int | None:
    """How many packets were missed between the last encapsulation sequence number taken and
    ``sequence`` (modulo 2**32); None for a packet to drop: a duplicate, an old one, or a
    stray more than :data:`SEQUENCE_WINDOW` ahead."""
    ahead = (sequence - last) & 0xFFFFFFFF
    if ahead == 0 or ahead > SEQUENCE_WINDOW:
        return None
    return ahead - 1


@dataclass(frozen=True, slots=True)
class NetworkParams:
    """Forward Open network connection parameters: ``size`` in bytes, ``variable`` size,
    ``priority`` (0 low, 1 high, 2 scheduled, 3 urgent), ``kind`` (NULL, MULTICAST,
    POINT_TO_POINT), ``redundant`` owner.  16 bits (size: 9 bits) or, Large, 32 bits."""

    size: int
    variable: bool = False
    priority: int = 0
    kind: int = POINT_TO_POINT
    redundant: bool = False

    @classmethod
    def decode(cls, word: int, large: bool) -> NetworkParams:
        if large:
            return cls(word & 0xFFFF, bool(word >> 25 & 1), word >> 26 & 3, word >> 29 & 3,
                       bool(word >> 31 & 1))
        return cls(word & 0x1FF, bool(word >> 9 & 1), word >> 10 & 3, word >> 13 & 3, bool(word >> 15 & 1))

    def encode(self, large: bool) -> int:
        limit = 0xFFFF if large else 0x1FF
        if not 0 <= self.size <= limit:
            raise CodecError(f"connection size {self.size} is outside 0-{limit}")
        shift = 16 if large else 0
        return (self.size | (self.variable << (9 + shift)) | (self.priority << (10 + shift))
                | (self.kind << (13 + shift)) | (self.redundant << (15 + shift)))


@dataclass(frozen=True, slots=True)
class Transport:
    """The transport class and trigger byte: ``server`` direction bit (7), ``trigger``
    (bits 4-6: 0 cyclic, 1 change of state, 2 application), ``cls`` (bits 0-3)."""

    cls: int
    trigger: int = 0
    server: bool = False

    @classmethod
    def decode(cls, byte: int) -> Transport:
        return cls(byte & 0x0F, byte >> 4 & 7, bool(byte & 0x80))

    def encode(self) -> int:
        return (self.cls & 0x0F) | (self.trigger & 7) << 4 | (0x80 if self.server else 0)


def timeout_multiplier(code: int) -> int:
    """The connection timeout multiplier a Forward Open's code 0-7 stands for (x4 ... x512)."""
    if not 0 <= code <= 7:
        raise CodecError(f"connection timeout multiplier {code} is reserved (0-7)")
    return 4 << code


_RPI_WORDS = struct.Struct("<BBII")  # 0x0112's additional status: O->T, T->O RPI types; O->T, T->O RPIs
RPI_ACCEPTABLE, RPI_MINIMUM, RPI_MAXIMUM = 0, 2, 3  # the acceptable-RPI types


def rpi_refusal_words(o_t_type: int, t_o_type: int, o_t_rpi: int, t_o_rpi: int) -> tuple[int, ...]:
    """The five 16-bit words that follow extended status 0x0112 (RPI values not acceptable)
    in a Forward Open's failure reply: the acceptable O->T and T->O RPI types (a USINT each:
    RPI_ACCEPTABLE, RPI_MINIMUM, RPI_MAXIMUM) and the acceptable RPIs (a UDINT each, us).

    >>> rpi_refusal_words(RPI_ACCEPTABLE, RPI_MAXIMUM, 10_000, 1_000_000)
    (768, 10000, 0, 16960, 15)
    """
    return struct.unpack("<5H", _RPI_WORDS.pack(o_t_type, t_o_type, o_t_rpi, t_o_rpi))


@dataclass(frozen=True, slots=True)
class Sockaddr:
    """A Sockaddr Info item's body (type 0x8000 O->T or 0x8001 T->O): big-endian
    ``struct sockaddr_in``."""

    host: str = "0.0.0.0"
    port: int = IO_PORT
    family: int = 2


def encode_sockaddr(addr: Sockaddr) -> bytes:
    try:
        return _SOCKADDR.pack(addr.family, addr.port, int(ipaddress.IPv4Address(addr.host)), b"\0" * 8)
    except (ValueError, struct.error) as exc:
        raise CodecError(f"bad socket address {addr.host}:{addr.port}: {exc}") from None


def decode_sockaddr(data: bytes) -> Sockaddr:
    if len(data) != 16:
        raise CodecError(f"Sockaddr Info item must be 16 bytes, not {len(data)}")
    family, port, host, _zero = _SOCKADDR.unpack(data)
    return Sockaddr(str(ipaddress.IPv4Address(host)), port, family)
