'''Modbus/RTU framing, sans-IO: CRC-16, frame lengths, silence timing, and a resynchronising
decoder.  The PDU inside a frame is the very one Modbus/TCP carries (:mod:`cpppo.modbus.pdu`).

An RTU frame (Modbus over Serial Line v1.02, section 2.5.1) is the unit id, the PDU and a CRC-16
(polynomial 0xA001 reflected, initial 0xFFFF) sent low byte first::

    +------+----------+-------------+---------+---------+
    | unit | function | data ...    | CRC lo  | CRC hi  |
    +------+----------+-------------+---------+---------+

>>> encode(1, bytes.fromhex("03 0000 000a")).hex()
'01030000000ac5cd'
>>> crc16(bytes.fromhex("01030000000a")).to_bytes(2, "little").hex()
'c5cd'

Delimiting.  RTU has no length field: a frame ends with a silence of 3.5 character times (t3.5)
on the line, and a gap of more than 1.5 character times (t1.5) inside a frame makes the frame
invalid.  A character is 11 bits (start, 8 data, parity or a second stop bit, stop), so at
19200 baud t3.5 is 2.0 ms; above 19200 baud the standard fixes t3.5 = 1.75 ms and t1.5 = 0.75 ms.
:class:`Decoder` ends a frame two ways: as soon as the bytes in hand make a complete frame of
the length its function code implies with a good CRC (so a master never waits for t3.5 to pass
before the reply is read), or, for a function whose length cannot be known, at t3.5 of silence.
Bytes still incomplete when t3.5 of silence passes are a broken frame and are dropped.  The
t1.5 rule is *not* enforced: an operating system's serial driver (and any pseudo-terminal or TCP
socket) hands bytes over in blocks whose arrival times say nothing about gaps between the
characters on the wire; the CRC catches what such a gap would have corrupted.

Resynchronisation.  Garbage before a frame, a frame with a bad CRC, or a frame's tail after its
head was lost are skipped byte by byte until a frame with a good CRC starts; the
:class:`Counters` say how many frames were taken and what was dropped.

>>> d = Decoder(requests=True)
>>> [f.hex() for f in d.feed(b"\\xff\\x00" + encode(1, bytes.fromhex("03 0000 000a")), now=0.0)]
['01030000000ac5cd']
>>> d.counters
Counters(frames=1, dropped_bytes=2, bad_crc=0, broken=0, foreign=0)
'''

from __future__ import annotations

from dataclasses import dataclass

from cpppo.modbus.errors import FrameError

__all__ = [
    "MAX_FRAME", "Counters", "Decoder", "char_time", "crc16", "encode", "request_length",
    "response_length", "silences", "split",
]

MAX_FRAME = 256                 # unit id + PDU (253) + CRC (2), rounded up
MIN_FRAME = 4                   # unit id, function code, CRC


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """The Modbus CRC-16 of ``data`` (sent low byte first)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def encode(unit_id: int, pdu: bytes) -> bytes:
    """The RTU frame carrying ``pdu`` for ``unit_id``."""
    if not 1 <= len(pdu) <= 253:
        raise FrameError(f"PDU of {len(pdu)} bytes is outside 1..253")
    body = bytes((unit_id & 0xFF,)) + pdu
    return body + crc16(body).to_bytes(2, "little")


def split(frame: bytes) -> tuple[int, bytes]:
    """``(unit_id, pdu)`` of a whole frame whose CRC is good; FrameError otherwise."""
    if len(frame) < MIN_FRAME:
        raise FrameError(f"RTU frame of {len(frame)} bytes is shorter than {MIN_FRAME}")
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        raise FrameError("RTU frame CRC does not match")
    return frame[0], bytes(frame[1:-2])


def char_time(baudrate: int, bits: int = 11) -> float:
    """Seconds one character of ``bits`` bits takes at ``baudrate``."""
    if baudrate <= 0:
        raise ValueError(f"baud rate {baudrate} must be positive")
    return bits / baudrate


def silences(baudrate: int, bits: int = 11) -> tuple[float, float]:
    """``(t1.5, t3.5)`` in seconds at ``baudrate``; fixed at 0.75 / 1.75 ms above 19200 baud.

    >>> [round(t * 1000, 3) for t in silences(9600)]
    [1.719, 4.01]
    >>> silences(115200)
    (0.00075, 0.00175)
    """
    if baudrate > 19200:
        return 0.00075, 0.00175
    char = char_time(baudrate, bits)
    return 1.5 * char, 3.5 * char


# Frame lengths.  Each function returns the whole frame's length (unit id, PDU, CRC) from its
# first bytes, None if more bytes are needed to know, or -1 if the function's length cannot be
# known from the bytes (an unsupported function, delimited by silence only).

_REQUEST_FIXED = {1: 5, 2: 5, 3: 5, 4: 5, 5: 5, 6: 5, 7: 1, 8: 5, 11: 1, 12: 1, 17: 1, 22: 7, 24: 3}
_REQUEST_COUNTED = {15: 5, 16: 5, 20: 1, 21: 1, 23: 9}          # PDU offset of the byte count
_RESPONSE_FIXED = {5: 5, 6: 5, 7: 2, 8: 5, 11: 5, 15: 5, 16: 5, 22: 7}
_RESPONSE_COUNTED = {1: 1, 2: 1, 3: 1, 4: 1, 12: 1, 17: 1, 20: 1, 21: 1, 23: 1}


def _pdu_length(buffer: bytes | bytearray, start: int, fixed: dict[int, int],
                counted: dict[int, int]) -> int | None:
    function = buffer[start + 1]
    size = fixed.get(function)
    if size is not None:
        return size
    where = counted.get(function)
    if where is not None:
        index = start + 1 + where
        return where + 1 + buffer[index] if index < len(buffer) else None
    return -1


def request_length(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """The length of the request frame at ``start`` (see above); ``buffer`` holds at least
    two bytes from ``start``."""
    if buffer[start + 1] == 43:
        if start + 2 >= len(buffer):
            return None
        return 7 if buffer[start + 2] == 14 else -1
    size = _pdu_length(buffer, start, _REQUEST_FIXED, _REQUEST_COUNTED)
    return size if size is None or size < 0 else size + 3


def response_length(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """The length of the response frame at ``start`` (see above)."""
    function = buffer[start + 1]
    if function & 0x80:
        return 5
    if function == 24:                                   # FIFO queue: a 16-bit byte count
        return int.from_bytes(buffer[start + 2:start + 4]) + 6 if start + 4 <= len(buffer) else None
    if function == 43:
        return _identification_length(buffer, start)
    size = _pdu_length(buffer, start, _RESPONSE_FIXED, _RESPONSE_COUNTED)
    return size if size is None or size < 0 else size + 3


def _identification_length(buffer: bytes | bytearray, start: int) -> int | None:
    """Function 43/14 reply: 8 header bytes (unit id included), then (id, length, data) objects."""
    if start + 8 > len(buffer):
        return None
    if buffer[start + 2] != 14:
        return -1
    offset = start + 8
    for _ in range(buffer[start + 7]):
        if offset + 2 > len(buffer):
            return None
        offset += 2 + buffer[offset + 1]
        if offset - start > MAX_FRAME:
            return -1
    return offset - start + 2


@dataclass
class Counters:
    """What a :class:`Decoder` took and dropped."""

    frames: int = 0             # frames with a good CRC handed on
    dropped_bytes: int = 0      # bytes skipped while resynchronising (garbage, bad frames)
    bad_crc: int = 0            # complete frames (by length) whose CRC did not match
    broken: int = 0             # incomplete frames ended by a silence of t3.5
    foreign: int = 0            # (requests=True) replies of other devices on the line, skipped

    def __repr__(self) -> str:
        return (f"Counters(frames={self.frames}, dropped_bytes={self.dropped_bytes}, "
                f"bad_crc={self.bad_crc}, broken={self.broken}, foreign={self.foreign})")


class Decoder:
    """Bytes in (with the time they arrived), whole frames out, resynchronising on noise.

    ``requests=True`` decodes requests (a server's view of the line; replies of other devices
    on a shared line are recognised and skipped as ``foreign``), ``requests=False`` replies (a
    master's view).  ``silence`` is t3.5 in seconds (:func:`silences`).  Call :meth:`feed` with
    each block read, and :meth:`expire` once ``deadline`` has passed with nothing read.
    """

    def __init__(self, requests: bool = True, silence: float = 0.00175,
                 counters: Counters | None = None) -> None:
        self.requests = requests
        self.silence = silence
        self.buffer = bytearray()
        self.last = 0.0                 # when the last bytes arrived
        self.counters = Counters() if counters is None else counters    # may be shared
        self._length = request_length if requests else response_length

    @property
    def deadline(self) -> float | None:
        """When the bytes in hand are ended by silence (None: nothing in hand)."""
        return self.last + self.silence if self.buffer else None

    def reset(self) -> None:
        """Forget the bytes in hand (a master does so before it sends a request)."""
        if self.buffer:
            self.counters.dropped_bytes += len(self.buffer)
            self.buffer.clear()

    def feed(self, data: bytes, now: float) -> list[bytes]:
        """The frames completed by ``data``, read at time ``now`` (seconds, monotonic)."""
        frames: list[bytes] = []
        if self.buffer and now - self.last >= self.silence:
            frames.extend(self.expire(now))
        self.buffer += data
        self.last = now
        frames.extend(self._scan(final=False))
        return frames

    def expire(self, now: float) -> list[bytes]:
        """At or after ``deadline``: the bytes in hand are ended by silence.  Returns the
        frames they still hold (a frame of a function whose length is unknown, or frames after
        garbage), dropping what is left."""
        if not self.buffer or now - self.last < self.silence:
            return []
        frames = self._scan(final=True)
        if self.buffer:
            self.counters.broken += 1
            self.counters.dropped_bytes += len(self.buffer)
            self.buffer.clear()
        return frames

    def _candidate(self, start: int, final: bool) -> int | None:
        """The frame that may start at ``start``: its length if complete with a good CRC, 0 if
        it cannot be one (complete with a bad CRC, too long, or at ``final`` incomplete), None
        if more bytes (or, for a function of unknown length, the silence) are needed."""
        buffer = self.buffer
        if len(buffer) - start < MIN_FRAME:
            return 0 if final else None
        length = self._length(buffer, start)
        if length is not None and length < 0:           # unknown function: up to the silence
            length = len(buffer) - start if final else None
        if length is None:
            return 0 if final else None
        end = start + length
        if length > MAX_FRAME or end > len(buffer):
            return 0 if final or length > MAX_FRAME else None
        return length if _good(buffer, start, end) else 0

    def _foreign(self, start: int) -> int:
        """The length of another device's reply at ``start`` (requests=True), or 0."""
        buffer = self.buffer
        if len(buffer) - start < MIN_FRAME:
            return 0
        length = response_length(buffer, start)
        if length is None or length < 0 or start + length > len(buffer):
            return 0
        return length if _good(buffer, start, start + length) else 0

    def _scan(self, final: bool) -> list[bytes]:
        frames: list[bytes] = []
        buffer, counters = self.buffer, self.counters
        while buffer:
            length = self._candidate(0, final)
            if length:
                frames.append(bytes(buffer[:length]))
                del buffer[:length]
                counters.frames += 1
                continue
            if length is None and (len(buffer) < 2 or self._length(buffer, 0) != -1):
                break                                    # a frame in progress: wait for it
            foreign = self._foreign(0) if self.requests else 0
            if foreign:
                del buffer[:foreign]
                counters.foreign += 1
                continue
            skip = self._resync(final)
            if skip is None:
                break
            expected = self._length(buffer, 0) if len(buffer) >= 2 else None
            if expected is not None and expected > 0:
                if expected > len(buffer):
                    counters.broken += 1                 # cut short by the silence
                elif expected <= skip:
                    counters.bad_crc += 1
            counters.dropped_bytes += skip
            del buffer[:skip]
        return frames

    def _resync(self, final: bool) -> int | None:
        """How many bytes to skip to reach the next frame with a good CRC (or, in requests
        mode, another device's reply); None to wait for more bytes or the silence, and
        ``len(buffer)`` at ``final`` (or when too much is in hand) if no frame starts anywhere."""
        buffer = self.buffer
        for start in range(1, len(buffer)):
            if self._candidate(start, final) or (self.requests and self._foreign(start)):
                return start
        if final or len(buffer) > 2 * MAX_FRAME:
            return len(buffer)
        return None


def _good(buffer: bytearray, start: int, end: int) -> bool:
    return crc16(memoryview(buffer)[start:end - 2]) == buffer[end - 2] | buffer[end - 1] << 8
