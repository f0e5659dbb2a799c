"""EtherNet/IP encapsulation: the 24-byte header that frames every TCP and UDP message.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-------------------------------+-------------------------------+
    |        command (UINT)         |   length of payload (UINT)    |
    +-------------------------------+-------------------------------+
    |                    session handle (UDINT)                     |
    +---------------------------------------------------------------+
    |                        status (UDINT)                         |
    +---------------------------------------------------------------+
    |                  sender context (8 octets) ...                |
    +                                                               +
    |                                                               |
    +---------------------------------------------------------------+
    |                        options (UDINT)                        |
    +---------------------------------------------------------------+
    |                 payload (``length`` octets) ...               |

All fields little-endian.  ``decode(buffer)`` is the framer: it returns ``(consumed, header,
payload)``; ``consumed == 0`` means the buffer does not yet hold a whole frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from cpppo.enip.codec.errors import CodecError

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "Command",
    "Header",
    "Status",
    "decode",
    "decode_register_session",
    "encode",
    "register_session_data",
    "sender_context",
]

HEADER_SIZE = 24
MAX_PAYLOAD = 65511  # 65535 minus the header: the length field's own limit
#: the header's fields (command, length, session, status, context, options), for framers that
#: unpack in place (``HEADER.unpack_from(buffer, offset)``)
HEADER = _HEADER = struct.Struct("<HHII8sI")
_REGISTER = struct.Struct("<HH")
_CONTEXT = struct.Struct("<Q")


class Command(IntEnum):
    """Encapsulation command codes (CIP Vol 2, Table 2-3.2; LEGACY is undocumented)."""

    NOP = 0x0000
    LEGACY = 0x0001
    LIST_SERVICES = 0x0004
    LIST_IDENTITY = 0x0063
    LIST_INTERFACES = 0x0064
    REGISTER_SESSION = 0x0065
    UNREGISTER_SESSION = 0x0066
    SEND_RR_DATA = 0x006F
    SEND_UNIT_DATA = 0x0070
    INDICATE_STATUS = 0x0072
    CANCEL = 0x0073


class Status(IntEnum):
    """Encapsulation status codes (CIP Vol 2, Table 2-3.3)."""

    SUCCESS = 0x0000
    INVALID_COMMAND = 0x0001
    INSUFFICIENT_MEMORY = 0x0002
    INCORRECT_DATA = 0x0003
    INVALID_SESSION = 0x0064
    INVALID_LENGTH = 0x0065
    UNSUPPORTED_PROTOCOL = 0x0069


@dataclass(frozen=True, slots=True)
class Header:
    """One encapsulation header.  ``length`` is the payload length as sent."""

    command: int
    length: int = 0
    session: int = 0
    status: int = 0
    context: bytes = b"\0" * 8
    options: int = 0


def decode(buffer: bytes | bytearray | memoryview) -> tuple[int, Header | None, bytes]:
    """Frame one message from the front of ``buffer``.

    Returns ``(consumed, header, payload)``; ``(0, None, b"")`` when more bytes are needed.
    Never raises for a short buffer; the caller bounds the length it is willing to buffer
    (``header.length`` is available as soon as 24 bytes have arrived: see ``peek_length``)."""
    if len(buffer) < HEADER_SIZE:
        return 0, None, b""
    command, length, session, status, context, options = _HEADER.unpack_from(buffer, 0)
    end = HEADER_SIZE + length
    if len(buffer) < end:
        return 0, None, b""
    header = Header(command, length, session, status, bytes(context), options)
    return end, header, bytes(buffer[HEADER_SIZE:end])


def peek_length(buffer: bytes | bytearray | memoryview) -> int | None:
    """The payload length announced by a header at the front of ``buffer`` (None if < 24 bytes)."""
    if len(buffer) < HEADER_SIZE:
        return None
    return int.from_bytes(buffer[2:4], "little")


def encode(command: int, payload: bytes = b"", *, session: int = 0, status: int = 0,
           context: bytes = b"\0" * 8, options: int = 0) -> bytes:
    """One framed message: the header (with ``length`` = len(payload)) followed by payload."""
    if len(payload) > MAX_PAYLOAD:
        raise CodecError(f"encapsulation payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if len(context) != 8:
        raise CodecError(f"sender context must be 8 bytes, not {len(context)}")
    try:
        return _HEADER.pack(command, len(payload), session, status, context, options) + payload
    except struct.error as exc:
        raise CodecError(f"encapsulation header field out of range: {exc}") from None


def sender_context(number: int) -> bytes:
    """The 8-byte sender context of a request numbered ``number`` (little-endian); a client
    matches replies to requests by it."""
    return _CONTEXT.pack(number & 0xFFFFFFFFFFFFFFFF)


def register_session_data(version: int = 1, options: int = 0) -> bytes:
    """The 4-byte payload of Register Session (request and reply): protocol version, options."""
    return _REGISTER.pack(version, options)


def decode_register_session(payload: bytes) -> tuple[int, int]:
    """``(protocol_version, options)`` from a Register Session payload."""
    if len(payload) != _REGISTER.size:
        raise CodecError(f"Register Session payload must be 4 bytes, not {len(payload)}")
    return _REGISTER.unpack(payload)
