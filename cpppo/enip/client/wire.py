"""The client's side of the wire, sans-IO: request bytes out, reply records in.

Built on the shared codec (``codec.encapsulation``, ``codec.cpf``, ``codec.epath``,
``codec.types``); this module adds only what the client needs on top: operation paths (the
dicts of ``parse_operations``) to EPATH segments, the CIP request/reply envelope, Unconnected
Send and Multiple Service Packet framing, the Logix Read/Write Tag [Fragmented] request
bodies, and the errors clients raise.

>>> cip_request(0x4C, [{"symbolic": "SCADA"}], b"\\x01\\x00").hex()
'4c0491055343414441000100'
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.enip.client.operations import LOGIX_STRING_TYPE, TYPES_BY_CODE
from cpppo.enip.codec import cip, cpf, encapsulation, epath, logix
from cpppo.enip.codec import types as ciptypes
from cpppo.enip.codec.errors import CodecError

__all__ = [
    "STATUS_TEXT",
    "CIPReply",
    "CodecError",
    "ENIPConnectionError",
    "ENIPError",
    "ENIPStatusError",
    "ENIPTimeout",
    "cip_request",
    "cip_strings",
    "decode_cip_reply",
    "decode_msp",
    "decode_values",
    "default_type",
    "encode_tag_values",
    "encode_values",
    "is_type_mismatch",
    "multiple_request",
    "segments",
    "split_typed",
    "status_text",
    "type_prefix",
    "unconnected_send",
]

# CIP services the client issues.
GET_ATTRIBUTES_ALL = 0x01
GET_ATTRIBUTE_SINGLE = 0x0E
SET_ATTRIBUTE_SINGLE = 0x10
MULTIPLE_SERVICE = 0x0A
READ_TAG = 0x4C
WRITE_TAG = 0x4D
READ_FRAG = 0x52
WRITE_FRAG = 0x53
UNCONNECTED_SEND = 0x52
CIP_STRING = 0xD0       # the CIP STRING type (UINT length, characters)
PARTIAL = 0x06          # general status: more data follows (Read Tag [Fragmented])
MSP_ERROR = 0x1E        # general status: an embedded service failed

STATUS_TEXT = {
    0x01: "Connection failure", 0x02: "Resource unavailable", 0x03: "Invalid parameter value",
    0x04: "Path segment error", 0x05: "Path destination unknown", 0x06: "Partial transfer",
    0x08: "Service not supported", 0x09: "Invalid attribute value", 0x0C: "Object state conflict",
    0x0E: "Attribute not settable", 0x10: "Device state conflict", 0x11: "Reply data too large",
    0x13: "Not enough data", 0x14: "Attribute not supported", 0x15: "Too much data",
    0x16: "Object does not exist", 0x1E: "Embedded service error", 0x1F: "Vendor specific error",
    0x20: "Invalid parameter", 0x26: "Path size invalid", 0xFF: "General error",
}

_KIND = {"class": "class", "instance": "instance", "attribute": "attribute", "element": "element",
         "connection": "connection_point"}


class ENIPError(Exception):
    """Every EtherNet/IP client failure (one line of text says what happened)."""


class ENIPTimeout(ENIPError, TimeoutError):
    """No (complete) reply within the timeout."""


class ENIPConnectionError(ENIPError, ConnectionError):
    """The connection could not be made, or was dropped."""


class ENIPStatusError(ENIPError):
    """The device answered with an error status."""

    def __init__(self, message: str, status: Any = None) -> None:
        super().__init__(message)
        self.status = status


def status_text(status: Any) -> str:
    """'OK' for success, else the status number(s) and what they mean."""
    if status in (0, None):
        return "OK" if status == 0 else "No reply"
    general, ext = (status if isinstance(status, tuple) else (status, ()))
    if isinstance(general, str):
        return f"{general} status 0x{ext:02x}" if isinstance(ext, int) else general
    text = f"Status 0x{general:02x} ({STATUS_TEXT.get(general, 'unknown')})"
    if ext:
        text += " ext " + ",".join(f"0x{e:04x}" for e in ext)
    return text


def segments(path: Sequence[dict[str, Any]] | None) -> list[epath.Segment]:
    """Operation path dicts to codec EPATH segments."""
    out: list[epath.Segment] = []
    for seg in path or ():
        if "symbolic" in seg:
            out.append(epath.Symbolic(seg["symbolic"]))
        elif "port" in seg:
            out.append(epath.Port(int(seg["port"]), seg["link"]))
        else:
            if len(seg) != 1:
                raise ValueError(f"unknown path segment {seg!r}")
            (kind, value), = seg.items()
            if kind not in _KIND:
                raise ValueError(f"unknown path segment {seg!r}")
            out.append(epath.Logical(_KIND[kind], int(value)))
    return out


_PATHS: dict[tuple, bytes] = {}


def sized_path(path: Sequence[dict[str, Any]]) -> bytes:
    """The sized, padded EPATH of an operation path (cached: the same paths recur)."""
    key = tuple(tuple(seg.items()) for seg in path)
    encoded = _PATHS.get(key)
    if encoded is None:
        encoded = epath.encode_sized(segments(path))
        if len(_PATHS) > 4096:
            _PATHS.clear()
        _PATHS[key] = encoded
    return encoded


def cip_request(service: int, path: Sequence[dict[str, Any]], data: bytes = b"") -> bytes:
    """service, path size (words), padded EPATH, request data (as ``cip.Request.encode``)."""
    return bytes((service,)) + sized_path(path) + data


def unconnected_wrapper(route_path: Sequence[dict[str, Any]] | None, send_path: Sequence[dict[str, Any]],
                        tick: int = 5, ticks: int = 157) -> Callable[[bytes], bytes]:
    """A function wrapping requests in the same Unconnected Send (the parts that do not
    depend on the request are encoded once); equal to :func:`unconnected_send`."""
    head = cip_request(UNCONNECTED_SEND, send_path) + bytes((tick, ticks))
    route = epath.encode(segments(route_path)) if route_path else b""
    tail = bytes((len(route) // 2, 0)) + route
    size = struct.Struct("<H").pack

    def wrap(request: bytes) -> bytes:
        return head + size(len(request)) + request + (b"\0" if len(request) & 1 else b"") + tail
    return wrap


def unconnected_send(request: bytes, route_path: Sequence[dict[str, Any]] | None,
                     send_path: Sequence[dict[str, Any]], tick: int = 5, ticks: int = 157) -> bytes:
    """Wrap ``request`` in an Unconnected Send to the Connection Manager at ``send_path``."""
    body = cip.UnconnectedSend(request, tuple(segments(route_path)), tick, ticks).encode()
    return cip_request(UNCONNECTED_SEND, send_path, body)


def multiple_request(requests: Sequence[bytes]) -> bytes:
    """A Multiple Service Packet (to the Message Router @2/1) carrying ``requests``."""
    body = cip.encode_multiple(list(requests))
    return cip.Request(MULTIPLE_SERVICE, cip.MESSAGE_ROUTER_PATH, body).encode()


def decode_msp(data: bytes) -> list[bytes]:
    """The embedded replies of a Multiple Service Packet reply's data."""
    return cip.decode_multiple(data)


@dataclass(frozen=True, slots=True)
class CIPReply:
    """A decoded CIP reply: the request's service, general status, extended status words, data."""

    service: int
    status: int
    ext: tuple[int, ...]
    data: bytes

    @property
    def sts(self) -> int | tuple[int, tuple[int, ...]]:
        """The status as the 6-tuples carry it: 0x00, or (general, (ext, ...))."""
        return (self.status, self.ext) if self.ext else self.status


def decode_cip_reply(data: bytes) -> CIPReply:
    rpy = cip.Reply.decode(data)
    return CIPReply(rpy.service, rpy.status, rpy.ext_status, rpy.data)


_CTYPES: dict[int, Any] = {LOGIX_STRING_TYPE: ciptypes.LOGIX_STRING}


def _ctype(code: int) -> Any:
    """The codec type for a type code (cached), or a numeric stand-in for the few the codec
    does not name (BYTE, WORD, DWORD, LWORD); None if unknown.  0x02A0 (a structure) is
    taken to be the Logix STRING: callers check the structure handle first."""
    if code in _CTYPES:
        return _CTYPES[code]
    typ = ciptypes.BY_CODE.get(code)
    if typ is None or (typ.size is None and typ.code not in (0xD0, 0xDA)):
        info = TYPES_BY_CODE.get(code)
        typ = None
        if info is not None and info.fmt is not None:
            typ = ciptypes.NumericType(info.name, code, info.size, fmt=info.fmt, low=info.lo, high=info.hi)
    _CTYPES[code] = typ
    return typ


def type_prefix(tag_type: int) -> bytes:
    """The type of Write Tag [Fragmented] data: the UINT code, or for the Logix STRING
    (0x02A0) the structure type and its handle, as Logix clients send it (A0 02 CE 0F)."""
    if tag_type == LOGIX_STRING_TYPE:
        return logix.encode_type(ciptypes.STRUCT, ciptypes.STRING_HANDLE)
    return struct.pack("<H", tag_type)


def split_typed(data: bytes) -> tuple[int, int | None, bytes]:
    """The data of a Read Tag [Fragmented] reply: ``(type, structure handle or None, value
    bytes)``; a structure's type is 0x02A0 (its first two bytes, as upstream reports it).

    >>> split_typed(bytes.fromhex("a002ce0f0100"))
    (672, 4046, b'\\x01\\x00')
    >>> split_typed(bytes.fromhex("c3000100"))
    (195, None, b'\\x01\\x00')
    """
    tag_type = struct.unpack_from("<H", data)[0]
    if data[0] == ciptypes.STRUCT and len(data) >= 4:
        return tag_type, struct.unpack_from("<H", data, 2)[0], data[4:]
    return tag_type, None, data[2:]


def is_type_mismatch(reply: CIPReply) -> bool:
    """Did the device refuse a write's data type (general status 0xFF, extended 0x2107)?"""
    return reply.status == 0xFF and reply.ext[:1] == (0x2107,)


def default_type(values: Sequence[Any]) -> int:
    """The type of a write given no type: Logix STRING for text, REAL if any value is a
    float, else INT."""
    if values and all(isinstance(v, str) for v in values):
        return LOGIX_STRING_TYPE
    return 0xCA if any(isinstance(v, float) for v in values) else 0xC3


def encode_values(tag_type: int, values: Sequence[Any]) -> bytes:
    """Values to the bytes of ``tag_type`` (a CIP type code; 0x02A0: Logix STRINGs)."""
    typ = _ctype(tag_type)
    if typ is None:
        raise CodecError(f"cannot encode values of CIP type 0x{tag_type:04x}")
    return typ.encode(list(values))


def encode_tag_values(tag_type: int, values: Sequence[Any]) -> bytes:
    """The data of a Write Tag [Fragmented]: as :func:`encode_values`, except that a CIP
    STRING (0xD0) of odd length is padded to an even size, as the upstream simulator (and
    upstream's client) keep STRING tags."""
    if tag_type != CIP_STRING:
        return encode_values(tag_type, values)
    return b"".join(raw + b"\0" * (len(raw) % 2) for raw in (encode_values(CIP_STRING, [v]) for v in values))


def cip_strings(data: bytes) -> list[str] | None:
    """CIP STRINGs (UINT length, characters) each padded to an even size, as upstream serves
    STRING tags (the last one's pad may be missing); None if ``data`` are not that.

    >>> cip_strings(bytes.fromhex("0300616263000200") + b"de")
    ['abc', 'de']
    >>> cip_strings(bytes.fromhex("03006162630200") + b"de") is None
    True
    """
    out, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            return None
        size = struct.unpack_from("<H", data, at)[0]
        end = at + 2 + size
        if end > len(data):
            return None
        out.append(data[at + 2:end].decode("iso-8859-1"))
        at = end + size % 2
    return out


def decode_values(tag_type: int, data: bytes, handle: int | None = None) -> list[Any]:
    """The bytes of a Read Tag reply to values; unknown types come back as raw USINTs.

    A structure (0x02A0) with the Logix STRING handle decodes to text (one str per element);
    other structures, or STRING data that are not whole 88-byte elements (one fragment of a
    longer reply), stay raw USINTs."""
    if tag_type == LOGIX_STRING_TYPE and (handle != ciptypes.STRING_HANDLE or not data
                                          or len(data) % ciptypes.LOGIX_STRING_SIZE):
        return list(data)
    if tag_type == CIP_STRING:
        padded = cip_strings(data)
        if padded is not None:
            return padded
    typ = _ctype(tag_type)
    if typ is None:
        return list(data)
    values = typ.decode(data)
    if typ.code == 0xC1:
        return [int(v) for v in values]
    return values


def element_size(tag_type: int | None) -> int | None:
    typ = _ctype(tag_type) if tag_type else None
    return typ.size if typ is not None else None


# --- encapsulated requests and the replies to List Identity / Services / Interfaces -----

def frame(command: int, payload: bytes = b"", session: int = 0, context: bytes = b"\0" * 8) -> bytes:
    return encapsulation.encode(command, payload, session=session, context=context)


def rr_data(cip: bytes, timeout: int = 0) -> bytes:
    return cpf.encode_rr_data(cip, timeout=timeout)


# The hot path of the pipeline: a SendRRData frame (header + interface, timeout and the two
# CPF items) packed in one go, and its reply unpacked without intermediate records.  Both are
# byte-for-byte what the codec's encapsulation/cpf functions produce and accept.
_RR_FRAME = struct.Struct("<HHIIQIIHHHHHH")
_RR_REPLY = struct.Struct("<IHHHHHH")


def rr_frame(message: bytes, session: int, context: int) -> bytes:
    """encapsulation.encode(SEND_RR_DATA, cpf.encode_rr_data(message), session, context)."""
    size = len(message)
    return _RR_FRAME.pack(encapsulation.Command.SEND_RR_DATA, 16 + size, session, 0, context, 0,
                          0, 0, 2, cpf.NULL_ADDRESS, 0, cpf.UNCONNECTED_DATA, size) + message


def rr_message(payload: bytes) -> bytes:
    """The CIP message of a SendRRData reply payload (as cpf.decode_rr_data(payload).data)."""
    if len(payload) >= 16:
        _i, _t, count, null, nlen, kind, size = _RR_REPLY.unpack_from(payload)
        if count == 2 and null == cpf.NULL_ADDRESS and nlen == 0 and kind == cpf.UNCONNECTED_DATA \
                and len(payload) == 16 + size:
            return payload[16:]
    return cpf.decode_rr_data(payload).data


def header_dotdict(header: encapsulation.Header, peer: Any = None) -> dotdict:
    reply = dotdict()
    if peer is not None:
        reply["peer"] = peer
    reply["enip"] = dotdict(command=header.command, length=header.length, session_handle=header.session,
                            status=header.status, options=header.options)
    reply["enip.sender_context.input"] = header.context
    return reply


def list_reply(header: encapsulation.Header, payload: bytes, peer: Any = None) -> dotdict:
    """A List Identity / Services / Interfaces / Legacy reply as a dotted record under
    ``enip.CIP.<list_identity|list_services|list_interfaces|legacy>.CPF``."""
    reply = header_dotdict(header, peer)
    name = {encapsulation.Command.LIST_IDENTITY: "list_identity",
            encapsulation.Command.LIST_SERVICES: "list_services",
            encapsulation.Command.LIST_INTERFACES: "list_interfaces",
            encapsulation.Command.LEGACY: "legacy"}.get(header.command, f"command_{header.command}")
    if header.status or not payload:
        return reply
    items = []
    for item in cpf.decode_items(payload):
        rec = dotdict(type_id=item.type_id, length=len(item.data))
        if item.type_id == cpf.LIST_IDENTITY:
            ident = cpf.IdentityItem.decode(item.data)
            rec["identity_object"] = dotdict(
                version=ident.version, sin_family=ident.sin_family, sin_port=ident.sin_port,
                sin_addr=ident.sin_addr, vendor_id=ident.vendor_id, device_type=ident.device_type,
                product_code=ident.product_code,
                product_revision=ident.revision[0] | ident.revision[1] << 8,
                status_word=ident.status, serial_number=ident.serial_number,
                product_name=ident.product_name, state=ident.state)
        elif item.type_id == cpf.LIST_SERVICES:
            if len(item.data) < 4:
                raise CodecError(f"List Services item of {len(item.data)} bytes is too short")
            # lenient: some devices (and upstream cpppo) send a 15-byte name, not 16
            version, capability = struct.unpack_from("<HH", item.data)
            service_name = bytes(item.data[4:]).split(b"\0", 1)[0].decode("ascii", "replace")
            rec["communications_service"] = dotdict(version=version, capability=capability,
                                                    service_name=service_name)
        elif item.type_id == cpf.LEGACY_ADDRESS and len(item.data) == 36:
            leg = cpf.LegacyItem.decode(item.data)
            rec["legacy_CPF_0x0001"] = dotdict(version=leg.version, unknown_1=leg.unknown_1,
                                               sin_family=leg.sin_family, sin_port=leg.sin_port,
                                               sin_addr=leg.sin_addr, ip_address=leg.ip_address)
        else:
            rec["data"] = list(item.data)
        items.append(rec)
    reply[f"enip.CIP.{name}.CPF"] = dotdict(count=len(items), item=items)
    return reply


def identity_record(reply: dotdict) -> dotdict | None:
    """The identity of a List Identity reply, flattened for callers: product_name,
    serial_number, vendor_id, product_type, product_code, revision, status, state, ..."""
    obj = reply.get("enip.CIP.list_identity.CPF.item[0].identity_object")
    if not obj:
        return None
    rev = obj.product_revision
    return dotdict(obj, product_type=obj.device_type, status=obj.status_word,
                   revision=dotdict(major=rev & 0xFF, minor=rev >> 8))
