'''Modbus PDUs: request records, their encoding, and the replies to them.

A PDU is a function code byte followed by function-specific data (Modbus Application Protocol
v1.1b3, section 6).  Requests decode into small immutable records; :func:`decode_request` is
what a server uses, and raises only :class:`~cpppo.modbus.errors.RequestError`, carrying the
exception code to answer with (1 for an unknown function, 3 for a bad quantity, byte count or
length).  Clients build the same records, ``.encode()`` them, and read the reply with
:func:`decode_response`.

>>> decode_request(bytes.fromhex("03 006b 0003"))
ReadRequest(function=3, address=107, quantity=3)
>>> ReadRequest(3, 107, 3).encode().hex()
'03006b0003'
>>> decode_response(ReadRequest(3, 107, 3), bytes.fromhex("03 06 022b 0000 0064"))
(555, 0, 100)
>>> exception_pdu(0x41, 1).hex()
'c101'
'''

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from cpppo.modbus.errors import ExceptionCode, ExceptionResponse, RequestError, ResponseError

__all__ = [
    "DeviceIdRequest", "DeviceIdentification", "Function", "MaskWriteRequest", "ReadRequest",
    "ReadWriteRequest", "Request", "WriteMultipleRequest", "WriteSingleRequest", "decode_request",
    "decode_response", "exception_pdu", "pack_bits", "pack_registers", "unpack_bits",
]


class Function(enum.IntEnum):
    """The function codes this package implements."""

    READ_COILS = 0x01
    READ_DISCRETE_INPUTS = 0x02
    READ_HOLDING_REGISTERS = 0x03
    READ_INPUT_REGISTERS = 0x04
    WRITE_SINGLE_COIL = 0x05
    WRITE_SINGLE_REGISTER = 0x06
    WRITE_MULTIPLE_COILS = 0x0F
    WRITE_MULTIPLE_REGISTERS = 0x10
    MASK_WRITE_REGISTER = 0x16
    READ_WRITE_MULTIPLE_REGISTERS = 0x17
    ENCAPSULATED_INTERFACE = 0x2B


MEI_DEVICE_IDENTIFICATION = 0x0E
BIT_READS = frozenset((1, 2))              # function codes reading bits (plain ints: fast)
MAX_READ_BITS = 2000            # 0x07D0
MAX_READ_REGISTERS = 125        # 0x007D
MAX_WRITE_BITS = 1968           # 0x07B0
MAX_WRITE_REGISTERS = 123       # 0x007B
MAX_RW_WRITE_REGISTERS = 121    # 0x0079
MAX_PDU_BYTES = 253
COIL_ON, COIL_OFF = 0xFF00, 0x0000

_ADDR_QTY = struct.Struct(">BHH")
_ADDR_QTY_COUNT = struct.Struct(">BHHB")
_MASK = struct.Struct(">BHHH")
_RW = struct.Struct(">BHHHHB")


def pack_bits(bits: Iterable[Any]) -> bytes:
    """Bits packed LSB-first into bytes, as Modbus carries coils.

    >>> pack_bits([1, 0, 1, 1, 0, 0, 1, 1, 1, 0]).hex()
    'cd01'
    """
    value = 0
    n = 0
    for n, bit in enumerate(bits, 1):
        if bit:
            value |= 1 << (n - 1)
    return value.to_bytes((n + 7) // 8, "little")


def unpack_bits(data: bytes, quantity: int) -> tuple[bool, ...]:
    """The first ``quantity`` bits of ``data`` (LSB-first)."""
    value = int.from_bytes(data, "little")
    return tuple(bool((value >> i) & 1) for i in range(quantity))


def pack_registers(values: Sequence[int]) -> bytes:
    """16-bit big-endian registers; a value outside 0..65535 raises ValueError."""
    try:
        return struct.pack(f">{len(values)}H", *values)
    except struct.error as exc:
        raise ValueError(f"register values must be integers 0..65535: {exc}") from None


def exception_pdu(function: int, code: int) -> bytes:
    """The exception reply to ``function``: the function code with its high bit set, then
    the exception code."""
    return bytes(((function | 0x80) & 0xFF, code))


class ReadRequest(NamedTuple):
    """Functions 1-4: read ``quantity`` coils, discrete inputs or registers from ``address``."""

    function: int
    address: int
    quantity: int

    def encode(self) -> bytes:
        return _ADDR_QTY.pack(self.function, self.address, self.quantity)


class WriteSingleRequest(NamedTuple):
    """Function 5 (``value`` a bool) or 6 (``value`` a register) at ``address``."""

    function: int
    address: int
    value: int

    def encode(self) -> bytes:
        value = (COIL_ON if self.value else COIL_OFF) if self.function == 5 else self.value
        return _ADDR_QTY.pack(self.function, self.address, value)


class WriteMultipleRequest(NamedTuple):
    """Function 15 (``values`` bools) or 16 (``values`` registers) from ``address``."""

    function: int
    address: int
    values: tuple

    def encode(self) -> bytes:
        data = pack_bits(self.values) if self.function == 15 else pack_registers(self.values)
        return _ADDR_QTY_COUNT.pack(self.function, self.address, len(self.values), len(data)) + data


class MaskWriteRequest(NamedTuple):
    """Function 22: ``register = (register & and_mask) | (or_mask & ~and_mask)``."""

    address: int
    and_mask: int
    or_mask: int
    function: int = Function.MASK_WRITE_REGISTER

    def encode(self) -> bytes:
        return _MASK.pack(self.function, self.address, self.and_mask, self.or_mask)


class ReadWriteRequest(NamedTuple):
    """Function 23: write ``values`` at ``write_address``, then read ``read_quantity``
    registers from ``read_address``."""

    read_address: int
    read_quantity: int
    write_address: int
    values: tuple
    function: int = Function.READ_WRITE_MULTIPLE_REGISTERS

    def encode(self) -> bytes:
        data = pack_registers(self.values)
        return _RW.pack(self.function, self.read_address, self.read_quantity, self.write_address,
                        len(self.values), len(data)) + data


class DeviceIdRequest(NamedTuple):
    """Function 43 / MEI 14: read device identification.  ``read_code`` 1 (basic), 2 (regular),
    3 (extended) stream from ``object_id``; 4 reads that one object."""

    read_code: int = 1
    object_id: int = 0
    function: int = Function.ENCAPSULATED_INTERFACE

    def encode(self) -> bytes:
        return bytes((self.function, MEI_DEVICE_IDENTIFICATION, self.read_code, self.object_id))


class DeviceIdentification(NamedTuple):
    """A device identification reply: ``objects`` maps object id to its bytes."""

    read_code: int
    conformity: int
    more_follows: bool
    next_object_id: int
    objects: Mapping[int, bytes]

    def encode(self) -> bytes:
        body = b"".join(bytes((oid, len(v))) + v for oid, v in self.objects.items())
        return bytes((Function.ENCAPSULATED_INTERFACE, MEI_DEVICE_IDENTIFICATION, self.read_code,
                      self.conformity, 0xFF if self.more_follows else 0, self.next_object_id,
                      len(self.objects))) + body


Request = (ReadRequest | WriteSingleRequest | WriteMultipleRequest | MaskWriteRequest
           | ReadWriteRequest | DeviceIdRequest)


def _bad_value(function: int, why: str) -> RequestError:
    return RequestError(function, ExceptionCode.ILLEGAL_DATA_VALUE, f"function {function}: {why}")


def _fixed(pdu: bytes, size: int) -> None:
    if len(pdu) != size:
        raise _bad_value(pdu[0], f"PDU is {len(pdu)} bytes, expected {size}")


def _read(pdu: bytes) -> ReadRequest:
    if len(pdu) != 5:
        _fixed(pdu, 5)
    function, address, quantity = _ADDR_QTY.unpack(pdu)
    limit = MAX_READ_BITS if function in BIT_READS else MAX_READ_REGISTERS
    if not 1 <= quantity <= limit:
        raise _bad_value(function, f"quantity {quantity} is outside 1..{limit}")
    return ReadRequest(function, address, quantity)


def _write_single(pdu: bytes) -> WriteSingleRequest:
    _fixed(pdu, 5)
    function, address, value = _ADDR_QTY.unpack(pdu)
    if function == Function.WRITE_SINGLE_COIL:
        if value not in (COIL_ON, COIL_OFF):
            raise _bad_value(function, f"coil value 0x{value:04x} is neither 0xFF00 nor 0x0000")
        value = value == COIL_ON
    return WriteSingleRequest(function, address, value)


def _write_multiple(pdu: bytes) -> WriteMultipleRequest:
    if len(pdu) < 6:
        raise _bad_value(pdu[0], f"PDU is {len(pdu)} bytes, too short")
    function, address, quantity, count = _ADDR_QTY_COUNT.unpack_from(pdu)
    bits = function == Function.WRITE_MULTIPLE_COILS
    limit = MAX_WRITE_BITS if bits else MAX_WRITE_REGISTERS
    if not 1 <= quantity <= limit:
        raise _bad_value(function, f"quantity {quantity} is outside 1..{limit}")
    expect = (quantity + 7) // 8 if bits else 2 * quantity
    if count != expect or len(pdu) != 6 + count:
        raise _bad_value(function, f"byte count {count} (PDU {len(pdu)} bytes) does not fit "
                                   f"quantity {quantity}")
    data = pdu[6:]
    values = unpack_bits(data, quantity) if bits else struct.unpack(f">{quantity}H", data)
    return WriteMultipleRequest(function, address, values)


def _mask_write(pdu: bytes) -> MaskWriteRequest:
    _fixed(pdu, 7)
    _, address, and_mask, or_mask = _MASK.unpack(pdu)
    return MaskWriteRequest(address, and_mask, or_mask)


def _read_write(pdu: bytes) -> ReadWriteRequest:
    if len(pdu) < 10:
        raise _bad_value(pdu[0], f"PDU is {len(pdu)} bytes, too short")
    function, raddr, rqty, waddr, wqty, count = _RW.unpack_from(pdu)
    if not 1 <= rqty <= MAX_READ_REGISTERS:
        raise _bad_value(function, f"read quantity {rqty} is outside 1..{MAX_READ_REGISTERS}")
    if not 1 <= wqty <= MAX_RW_WRITE_REGISTERS:
        raise _bad_value(function, f"write quantity {wqty} is outside 1..{MAX_RW_WRITE_REGISTERS}")
    if count != 2 * wqty or len(pdu) != 10 + count:
        raise _bad_value(function, f"byte count {count} does not fit write quantity {wqty}")
    return ReadWriteRequest(raddr, rqty, waddr, struct.unpack(f">{wqty}H", pdu[10:]))


def _encapsulated(pdu: bytes) -> DeviceIdRequest:
    function = pdu[0]
    if len(pdu) < 2 or pdu[1] != MEI_DEVICE_IDENTIFICATION:
        raise RequestError(function, ExceptionCode.ILLEGAL_FUNCTION,
                           "function 43: only MEI type 14 (device identification) is supported")
    _fixed(pdu, 4)
    if not 1 <= pdu[2] <= 4:
        raise _bad_value(function, f"read device id code {pdu[2]} is outside 1..4")
    return DeviceIdRequest(pdu[2], pdu[3])


_DECODERS: dict[int, Callable[[bytes], Request]] = {
    1: _read, 2: _read, 3: _read, 4: _read, 5: _write_single, 6: _write_single,
    15: _write_multiple, 16: _write_multiple, 22: _mask_write, 23: _read_write, 43: _encapsulated,
}


def decode_request(pdu: bytes) -> Request:
    """The request record in ``pdu``; raises :class:`RequestError` with the exception code to
    answer (``ILLEGAL_FUNCTION`` for an unknown function, ``ILLEGAL_DATA_VALUE`` otherwise)."""
    if not pdu:
        raise RequestError(0, ExceptionCode.ILLEGAL_FUNCTION, "empty PDU")
    decoder = _DECODERS.get(pdu[0])
    if decoder is None:
        raise RequestError(pdu[0], ExceptionCode.ILLEGAL_FUNCTION,
                           f"function 0x{pdu[0]:02x} is not supported")
    return decoder(pdu)


def _reply_data(request: Request, pdu: bytes) -> bytes:
    """The data after a ``count`` byte of a read reply, checked against the request."""
    if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
        raise ResponseError(f"function {pdu[0]}: reply byte count does not match its length")
    return pdu[2:]


def decode_response(request: Request, pdu: bytes) -> Any:
    """The result of ``request`` from its reply ``pdu``: a tuple of bools (bit reads), a tuple
    of ints (register reads, function 23), the request itself (writes, echoed), or a
    :class:`DeviceIdentification`.  Raises :class:`ExceptionResponse` for an exception reply and
    :class:`ResponseError` for a reply that does not fit the request."""
    function = request.function
    if not pdu:
        raise ResponseError("empty reply PDU")
    if pdu[0] == function | 0x80:
        if len(pdu) != 2:
            raise ResponseError(f"exception reply to function {function} is {len(pdu)} bytes")
        raise ExceptionResponse(function, pdu[1])
    if pdu[0] != function:
        raise ResponseError(f"reply function {pdu[0]} does not answer function {function}")
    if isinstance(request, ReadRequest):
        data = _reply_data(request, pdu)
        if function in BIT_READS:
            if len(data) != (request.quantity + 7) // 8:
                raise ResponseError(f"{len(data)} bytes do not hold {request.quantity} bits")
            return unpack_bits(data, request.quantity)
        if len(data) != 2 * request.quantity:
            raise ResponseError(f"{len(data)} bytes do not hold {request.quantity} registers")
        return struct.unpack(f">{request.quantity}H", data)
    if isinstance(request, ReadWriteRequest):
        data = _reply_data(request, pdu)
        if len(data) != 2 * request.read_quantity:
            raise ResponseError(f"{len(data)} bytes do not hold {request.read_quantity} registers")
        return struct.unpack(f">{request.read_quantity}H", data)
    if isinstance(request, DeviceIdRequest):
        return _decode_identification(pdu)
    if isinstance(request, WriteMultipleRequest):
        expect = _ADDR_QTY.pack(function, request.address, len(request.values))
    else:
        expect = request.encode()
    if pdu != expect:
        raise ResponseError(f"reply to function {function} does not echo the request")
    return request


def _decode_identification(pdu: bytes) -> DeviceIdentification:
    if len(pdu) < 7 or pdu[1] != MEI_DEVICE_IDENTIFICATION:
        raise ResponseError("device identification reply is too short")
    objects: dict[int, bytes] = {}
    offset = 7
    for _ in range(pdu[6]):
        if offset + 2 > len(pdu) or offset + 2 + pdu[offset + 1] > len(pdu):
            raise ResponseError("device identification object runs past the reply")
        size = pdu[offset + 1]
        objects[pdu[offset]] = pdu[offset + 2:offset + 2 + size]
        offset += 2 + size
    if offset != len(pdu):
        raise ResponseError("device identification reply has trailing bytes")
    return DeviceIdentification(pdu[2], pdu[3], pdu[4] == 0xFF, pdu[5], objects)
