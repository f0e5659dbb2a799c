"""CIP EPATH segments, both directions (CIP Vol 1, Appendix C-1).

A path is a tuple of segment records.  Encoded layouts (padded EPATH, as CIP requests use):

    port        0b000E_PPPP [link size if E] [port UINT if PPPP == 15] link... [pad]
    logical     0b001T_TTFF value          (FF: 0 = 8-bit, 1 = pad + 16-bit, 2 = pad + 32-bit)
                TTT: 0 class 0x20, 1 instance 0x24, 2 element/member 0x28,
                     3 connection point 0x2C, 4 attribute 0x30, 5 special 0x34 (electronic key)
    symbolic    0x91 length name... [pad]  (ANSI extended symbol: a Logix tag name)
    data        0x80 word-count data...    (simple data segment)

>>> encode((Logical("class", 2), Logical("instance", 1)))
b' \\x02$\\x01'
>>> decode(b"\\x91\\x05SCADA\\x00\\x28\\x03")
(Symbolic(name='SCADA'), Logical(kind='element', value=3))
"""

from __future__ import annotations

import ipaddress
import json
import struct
from dataclasses import dataclass

from cpppo.enip.codec.errors import CodecError

__all__ = [
    "Data", "Key", "Logical", "Port", "Segment", "Symbolic",
    "decode", "decode_sized", "encode", "encode_sized", "format_path", "parse_route_path",
]

LOGICAL_KINDS = ("class", "instance", "element", "connection_point", "attribute", "special", "service")
_KIND_CODE = {kind: code for code, kind in enumerate(LOGICAL_KINDS)}


@dataclass(frozen=True, slots=True)
class Logical:
    """A logical segment: ``kind`` is one of LOGICAL_KINDS (``element`` is Logix's array index,
    the CIP "member ID" type)."""

    kind: str
    value: int


@dataclass(frozen=True, slots=True)
class Symbolic:
    """An ANSI extended symbolic segment (0x91): a tag or member name."""

    name: str


@dataclass(frozen=True, slots=True)
class Port:
    """A port segment: ``port`` number and ``link`` (a slot/node number, or an IP address string)."""

    port: int
    link: int | str


@dataclass(frozen=True, slots=True)
class Key:
    """An electronic key (logical special segment 0x34, format 4): carried, not checked."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Data:
    """A simple data segment (0x80)."""

    data: bytes


Segment = Logical | Symbolic | Port | Key | Data


def _encode_port(seg: Port) -> bytes:
    if isinstance(seg.link, str):
        link = seg.link.encode("ascii")
    else:
        if not 0 <= seg.link <= 255:
            link = seg.link.to_bytes(4, "little") if seg.link >= 0 else b""
        else:
            link = bytes([seg.link])
    if not link or not 0 <= seg.port <= 0xFFFF:
        raise CodecError(f"port segment out of range: {seg}")
    first = 0x0F if seg.port >= 15 else seg.port
    if len(link) > 1:
        first |= 0x10
    out = bytearray([first])
    if len(link) > 1:
        out.append(len(link))
    if seg.port >= 15:
        out += struct.pack("<H", seg.port)
    out += link
    if len(out) % 2:
        out.append(0)
    return bytes(out)


def _encode_logical(kind: int, value: int, padded: bool) -> bytes:
    base = 0x20 | (kind << 2)
    pad = b"\0" if padded else b""
    if 0 <= value <= 0xFF:
        return bytes([base, value])
    if 0 <= value <= 0xFFFF:
        return bytes([base | 1]) + pad + struct.pack("<H", value)
    if 0 <= value <= 0xFFFFFFFF:
        return bytes([base | 2]) + pad + struct.pack("<I", value)
    raise CodecError(f"logical segment value out of range: {value}")


def encode(segments: tuple[Segment, ...] | list[Segment], padded: bool = True) -> bytes:
    """The bytes of a path (without its size)."""
    out = bytearray()
    for seg in segments:
        if isinstance(seg, Logical):
            if seg.kind not in _KIND_CODE:
                raise CodecError(f"unknown logical segment kind {seg.kind!r}")
            out += _encode_logical(_KIND_CODE[seg.kind], seg.value, padded)
        elif isinstance(seg, Symbolic):
            name = seg.name.encode("utf-8")
            if not 0 < len(name) <= 255:
                raise CodecError(f"symbolic segment must be 1-255 bytes: {seg.name!r}")
            out += bytes([0x91, len(name)]) + name + (b"\0" if len(name) % 2 else b"")
        elif isinstance(seg, Port):
            out += _encode_port(seg)
        elif isinstance(seg, Key):
            out += bytes([0x34, 0x04]) + seg.data
        elif isinstance(seg, Data):
            if len(seg.data) % 2 or len(seg.data) > 510:
                raise CodecError("data segment must be an even number of bytes up to 510")
            out += bytes([0x80, len(seg.data) // 2]) + seg.data
        else:
            raise CodecError(f"not a path segment: {seg!r}")
    return bytes(out)


def encode_sized(segments: tuple[Segment, ...] | list[Segment]) -> bytes:
    """A padded path prefixed by its size in 16-bit words (USINT), as in a CIP request."""
    body = encode(segments)
    if len(body) > 510:
        raise CodecError(f"path of {len(body)} bytes is too long")
    return bytes([len(body) // 2]) + body


def _need(data: bytes, end: int, what: str) -> None:
    if end > len(data):
        raise CodecError(f"truncated {what} segment in path {data.hex()}")


def decode(data: bytes, padded: bool = True) -> tuple[Segment, ...]:
    """Decode a whole path (every byte must belong to a segment)."""
    segments: list[Segment] = []
    i, n = 0, len(data)
    while i < n:
        first = data[i]
        kind = first >> 5
        if kind == 0:  # port
            j = i + 1
            size = 1
            if first & 0x10:
                _need(data, j + 1, "port")
                size = data[j]
                j += 1
            port = first & 0x0F
            if port == 15:
                _need(data, j + 2, "port")
                port = struct.unpack_from("<H", data, j)[0]
                j += 2
            _need(data, j + size, "port")
            raw = data[j:j + size]
            j += size
            if size == 1:
                link: int | str = raw[0]
            else:
                try:
                    link = raw.decode("ascii")
                except UnicodeDecodeError:
                    raise CodecError(f"port segment link address is not ASCII: {raw.hex()}") from None
            if (j - i) % 2 and padded:
                j += 1
            segments.append(Port(port, link))
            i = j
        elif kind == 1:  # logical
            ltype = (first >> 2) & 0x07
            fmt = first & 0x03
            if ltype == 7:
                raise CodecError(f"reserved logical segment type in 0x{first:02x}")
            if ltype == 5:  # special: electronic key
                _need(data, i + 2, "key")
                if data[i + 1] != 4 or fmt != 0:
                    raise CodecError(f"unsupported logical special segment {data[i:i + 2].hex()}")
                _need(data, i + 10, "key")
                segments.append(Key(bytes(data[i + 2:i + 10])))
                i += 10
                continue
            if fmt == 0:
                _need(data, i + 2, "logical")
                value, i = data[i + 1], i + 2
            elif fmt == 1:
                j = i + (2 if padded else 1)
                _need(data, j + 2, "logical")
                value, i = struct.unpack_from("<H", data, j)[0], j + 2
            elif fmt == 2:
                j = i + (2 if padded else 1)
                _need(data, j + 4, "logical")
                value, i = struct.unpack_from("<I", data, j)[0], j + 4
            else:
                raise CodecError(f"reserved logical segment format in 0x{first:02x}")
            segments.append(Logical(LOGICAL_KINDS[ltype], value))
        elif first == 0x91:
            _need(data, i + 2, "symbolic")
            size = data[i + 1]
            _need(data, i + 2 + size, "symbolic")
            try:
                name = data[i + 2:i + 2 + size].decode("utf-8")
            except UnicodeDecodeError:
                raise CodecError("symbolic segment is not valid text") from None
            if not name:
                raise CodecError("empty symbolic segment")
            segments.append(Symbolic(name))
            i += 2 + size + (size % 2 if padded else 0)
        elif first == 0x80:
            _need(data, i + 2, "data")
            size = data[i + 1] * 2
            _need(data, i + 2 + size, "data")
            segments.append(Data(bytes(data[i + 2:i + 2 + size])))
            i += 2 + size
        else:
            raise CodecError(f"unsupported path segment type 0x{first:02x} at offset {i}")
    if i > n:
        raise CodecError(f"path segment runs past the end of the path {data.hex()}")
    return tuple(segments)


def decode_sized(data: bytes, offset: int = 0) -> tuple[tuple[Segment, ...], int]:
    """Decode a word-count-prefixed path at ``offset``; returns (segments, offset after it)."""
    if offset >= len(data):
        raise CodecError("missing path size")
    end = offset + 1 + data[offset] * 2
    if end > len(data):
        raise CodecError(f"path size {data[offset]} words exceeds the {len(data) - offset - 1} bytes left")
    return decode(data[offset + 1:end]), end


def format_path(segments: tuple[Segment, ...]) -> str:
    """A short human form: ``SCADA[3]``, ``@0x01/1/7``, ``1/0``."""
    parts: list[str] = []
    for seg in segments:
        if isinstance(seg, Symbolic):
            parts.append(("." if parts else "") + seg.name)
        elif isinstance(seg, Logical) and seg.kind == "element":
            parts.append(f"[{seg.value}]")
        elif isinstance(seg, Logical):
            parts.append(("@" if seg.kind == "class" else "/") + (
                f"0x{seg.value:02X}" if seg.kind == "class" else str(seg.value)))
        elif isinstance(seg, Port):
            parts.append(f"{' ' if parts else ''}{seg.port}/{seg.link}")
        else:
            parts.append(f"<{type(seg).__name__}>")
    return "".join(parts)


def _port_from(item: object) -> Port:
    if isinstance(item, dict):
        if set(item) != {"port", "link"}:
            raise ValueError(f"route path element needs exactly 'port' and 'link': {item!r}")
        port, link = item["port"], item["link"]
    elif isinstance(item, str) and "/" in item:
        port_text, link_text = item.split("/", 1)
        port = int(port_text, 0)
        link = link_text
    else:
        raise ValueError(f"route path element must be '<port>/<link>' or a JSON object: {item!r}")
    if not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise ValueError(f"route path port must be 1-65535: {port!r}")
    if isinstance(link, str):
        try:
            link = int(link, 0)
        except ValueError:
            try:
                ipaddress.IPv4Address(link)
            except ValueError:
                raise ValueError(f"route path link must be a number or an IPv4 address: {link!r}") from None
    if isinstance(link, int) and not 0 <= link <= 255:
        raise ValueError(f"route path link number must be 0-255: {link!r}")
    return Port(port, link)


def parse_route_path(text: str | None) -> tuple[Port, ...] | bool | None:
    """Parse a ``--route-path`` value: ``<port>/<link>``, a JSON object or list of them.

    Returns a tuple of Port segments; ``None`` for no value (accept any route); ``False`` for
    ``0``/``false`` (no route path accepted).  Raises ValueError naming the problem.

    >>> parse_route_path("1/0")
    (Port(port=1, link=0),)
    >>> parse_route_path('{"port": 2, "link": "192.168.1.2"}')
    (Port(port=2, link='192.168.1.2'),)
    >>> parse_route_path("false")
    False
    """
    if text is None:
        return None
    stripped = text.strip()
    if stripped.lower() in ("0", "false", "none", "[]", ""):
        return False
    if "/" in stripped and not stripped.startswith(("[", "{")):
        return (_port_from(stripped),)
    if stripped.startswith("[") and ":" in stripped and "{" not in stripped:
        stripped = "{" + stripped[1:-1] + "}"  # the spec's own '["port": 1, "link": 0]' form
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"route path is neither <port>/<link> nor JSON: {text!r} ({exc.msg})") from None
    items = value if isinstance(value, list) else [value]
    if not items:
        return False
    return tuple(_port_from(item) for item in items)
