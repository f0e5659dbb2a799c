'''The Modbus/TCP MBAP framer: bytes in, (consumed, header, pdu) out.

Every Modbus/TCP message is a 7-byte MBAP header followed by a PDU (function code and data),
all fields big-endian::

     0       1       2       3       4       5       6       7 ...
    +-------+-------+-------+-------+-------+-------+-------+-------+-----------+
    | transaction id| protocol id   |    length     | unit  | func  | data ...  |
    |   (echoed)    |  (always 0)   | unit+PDU bytes|  id   | code  |           |
    +-------+-------+-------+-------+-------+-------+-------+-------+-----------+
    |<------------------ MBAP header (7) ------------------>|<---- PDU -------->|

``length`` counts the unit id and the PDU, so a frame is ``6 + length`` bytes long.  A PDU is
at most 253 bytes, so ``2 <= length <= 254``.

>>> decode(bytes.fromhex("0001 0000 0006 01 03 0000 000a"))
(12, MBAPHeader(transaction_id=1, protocol_id=0, length=6, unit_id=1), b'\\x03\\x00\\x00\\x00\\n')
>>> decode(b"\\x00\\x01\\x00")[0]     # not enough bytes yet
0
>>> encode(1, 1, bytes.fromhex("0300000001")).hex()
'000100000006010300000001'
'''

from __future__ import annotations

import struct
from typing import NamedTuple

from cpppo.modbus.errors import FrameError

__all__ = ["HEADER_SIZE", "MAX_LENGTH", "MAX_PDU", "MBAPHeader", "decode", "decode_from", "encode"]

HEADER_SIZE = 7
MAX_PDU = 253
MAX_LENGTH = MAX_PDU + 1          # the length field counts the unit id too
_HEADER = struct.Struct(">HHHB")


class MBAPHeader(NamedTuple):
    """The decoded MBAP header of one frame."""

    transaction_id: int
    protocol_id: int
    length: int
    unit_id: int


def decode(buffer: bytes | bytearray | memoryview,
           max_length: int = MAX_LENGTH) -> tuple[int, MBAPHeader | None, bytes]:
    """Decode the first frame in ``buffer``.

    Returns ``(consumed, header, pdu)``; ``consumed == 0`` (with ``header`` None) means the
    buffer holds no complete frame yet.  Raises :class:`FrameError` when the header cannot be
    the start of a valid frame: a protocol id other than 0, or a length outside
    ``2..max_length``.  The check happens as soon as the 7 header bytes are in, so a bad header
    is rejected without waiting for the body it announces.
    """
    return decode_from(buffer, 0, max_length)


def decode_from(buffer: bytes | bytearray | memoryview, offset: int = 0,
                max_length: int = MAX_LENGTH) -> tuple[int, MBAPHeader | None, bytes]:
    """:func:`decode` of the frame starting at ``offset`` (``consumed`` counts from there), so
    a caller can walk a buffer of pipelined frames without copying it."""
    if len(buffer) - offset < HEADER_SIZE:
        return 0, None, b""
    transaction_id, protocol_id, length, unit_id = _HEADER.unpack_from(buffer, offset)
    if protocol_id != 0:
        raise FrameError(f"MBAP protocol id {protocol_id} is not 0 (Modbus)")
    if not 2 <= length <= max_length:
        raise FrameError(f"MBAP length {length} is outside 2..{max_length}")
    end = offset + 6 + length
    if len(buffer) < end:
        return 0, None, b""
    return 6 + length, MBAPHeader(transaction_id, protocol_id, length, unit_id), \
        bytes(buffer[offset + HEADER_SIZE:end])


def encode(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    """The frame carrying ``pdu`` for ``unit_id``, with ``transaction_id``."""
    if not 1 <= len(pdu) <= MAX_PDU:
        raise FrameError(f"PDU of {len(pdu)} bytes is outside 1..{MAX_PDU}")
    return _HEADER.pack(transaction_id & 0xFFFF, 0, len(pdu) + 1, unit_id & 0xFF) + pdu
