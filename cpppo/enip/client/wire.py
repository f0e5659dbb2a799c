"""The client's side of the wire, sans-IO: operation paths and values to codec records and
bytes, replies to dotted records, and the errors clients raise.

Everything on the wire is the shared codec's (``codec.cip``, ``codec.logix``, ``codec.epath``,
``codec.cpf``, ``codec.encapsulation``, ``codec.types``); this module only adapts the
client's operation dicts (``parse_operations``) to it.

>>> cip_request(0x4C, [{"symbolic": "SCADA"}], logix.ReadTag(1).encode()).hex()
'4c0491055343414441000100'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.enip.client.operations import LOGIX_STRING_TYPE
from cpppo.enip.codec import cip, cpf, encapsulation, epath, logix
from cpppo.enip.codec import types as ciptypes
from cpppo.enip.codec.cip import STATUS_TEXT, Service, Status
from cpppo.enip.codec.cpf import rr_frame, rr_message
from cpppo.enip.codec.errors import CodecError
from cpppo.enip.codec.logix import split_typed

__all__ = [
    "STATUS_TEXT",
    "CIPReply",
    "CodecError",
    "ENIPConnectionError",
    "ENIPError",
    "ENIPStatusError",
    "ENIPTimeout",
    "cip_request",
    "decode_cip_reply",
    "decode_msp",
    "decode_values",
    "default_type",
    "encode_tag_values",
    "encode_values",
    "is_type_mismatch",
    "multiple_request",
    "read_request",
    "reply_record",
    "rr_frame",
    "rr_message",
    "segments",
    "split_typed",
    "status_text",
    "type_code",
    "unconnected_send",
    "write_request",
]

#: a decoded CIP reply: the request's service, general status, extended status words, data
CIPReply = cip.Reply
CIP_STRING = ciptypes.STRING.code  # the CIP STRING type (UINT length, characters)

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


_PATHS: dict[str, bytes] = {}
_READS: dict[tuple[str, int], bytes] = {}
_WRAPPERS: dict[tuple[str, str, int, int], Callable[[bytes], bytes]] = {}


def _cached(cache: dict, key: Any, make: Callable[[], Any]) -> Any:
    encoded = cache.get(key)
    if encoded is None:
        if len(cache) > 4096:
            cache.clear()
        encoded = cache[key] = make()
    return encoded


def sized_path(path: Sequence[dict[str, Any]]) -> bytes:
    """The sized, padded EPATH of an operation path (cached: the same paths recur; the key is
    the path's repr, which tells every path dict apart)."""
    return _cached(_PATHS, repr(path), lambda: epath.encode_sized(segments(path)))


def cip_request(service: int, path: Sequence[dict[str, Any]], data: bytes = b"") -> bytes:
    """A Message Router request (``cip.Request(service, path, data).encode()``, with the
    encoded paths cached)."""
    return cip.encode_request(service, sized_path(path), data)


def read_request(path: Sequence[dict[str, Any]], elements: int, offset: int | None = None) -> bytes:
    """Read Tag, or with an ``offset`` Read Tag Fragmented (Read Tag requests are cached)."""
    if offset is None:
        return _cached(_READS, (repr(path), elements), lambda: cip.encode_request(
            Service.READ_TAG, sized_path(path), logix.ReadTag(elements).encode()))
    return cip.encode_request(Service.READ_TAG_FRAGMENTED, sized_path(path),
                              logix.ReadTagFragmented(elements, offset).encode())


def type_code(tag_type: int) -> tuple[int, int | None]:
    """``(type code, structure handle)`` of a write's ``tag_type`` (0x02A0: the Logix STRING)."""
    if tag_type == LOGIX_STRING_TYPE:
        return ciptypes.STRUCT, ciptypes.STRING_HANDLE
    return tag_type, None


def write_request(path: Sequence[dict[str, Any]], tag_type: int, elements: int, raw: bytes,
                  offset: int | None = None) -> bytes:
    """Write Tag of ``raw`` (encoded values), or with an ``offset`` Write Tag Fragmented."""
    code, handle = type_code(tag_type)
    if offset is None:
        return cip.encode_request(Service.WRITE_TAG, sized_path(path),
                                  logix.WriteTag(code, elements, raw, handle).encode())
    return cip.encode_request(Service.WRITE_TAG_FRAGMENTED, sized_path(path),
                              logix.WriteTagFragmented(code, elements, offset, raw, handle).encode())


def unconnected_wrapper(route_path: Sequence[dict[str, Any]] | None, send_path: Sequence[dict[str, Any]],
                        tick: int = 5, ticks: int = 157) -> Callable[[bytes], bytes]:
    """A function wrapping requests in the same Unconnected Send to the Connection Manager
    at ``send_path`` (see ``cip.unconnected_sender``; cached, by the paths' reprs, as
    :func:`sized_path`: a client's every request is wrapped the same way)."""
    return _cached(_WRAPPERS, (repr(route_path), repr(send_path), tick, ticks),
                   lambda: cip.unconnected_sender(tuple(segments(route_path)), tuple(segments(send_path)),
                                                  tick, ticks))


def unconnected_send(request: bytes, route_path: Sequence[dict[str, Any]] | None,
                     send_path: Sequence[dict[str, Any]], tick: int = 5, ticks: int = 157) -> bytes:
    """Wrap ``request`` in an Unconnected Send to the Connection Manager at ``send_path``."""
    return unconnected_wrapper(route_path, send_path, tick, ticks)(request)


def multiple_request(requests: Sequence[bytes]) -> bytes:
    """A Multiple Service Packet (to the Message Router @2/1) carrying ``requests``."""
    body = cip.encode_multiple(list(requests))
    return cip.Request(Service.MULTIPLE_SERVICE_PACKET, cip.MESSAGE_ROUTER_PATH, body).encode()


def decode_msp(data: bytes) -> list[bytes]:
    """The embedded replies of a Multiple Service Packet reply's data."""
    return cip.decode_multiple(data)


decode_cip_reply = cip.Reply.decode


def _ctype(code: int) -> ciptypes.CIPType | None:
    """The codec type for a type code, or None if unknown.  0x02A0 (a structure) is taken
    to be the Logix STRING: callers check the structure handle first."""
    return ciptypes.LOGIX_STRING if code == LOGIX_STRING_TYPE else ciptypes.BY_CODE.get(code)


def is_type_mismatch(reply: CIPReply) -> bool:
    """Did the device refuse a write's data type (general status 0xFF, extended 0x2107)?"""
    return reply.status == Status.GENERAL_ERROR and reply.ext_status[:1] == (Status.EXT_BAD_TYPE,)


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
    return ciptypes.encode_padded_strings(values)


def decode_values(tag_type: int, data: bytes, handle: int | None = None) -> list[Any]:
    """The bytes of a Read Tag reply to values; unknown types come back as raw USINTs.

    A structure (0x02A0) with the Logix STRING handle decodes to text (one str per element);
    other structures, or STRING data that are not whole 88-byte elements (one fragment of a
    longer reply), stay raw USINTs."""
    if tag_type == LOGIX_STRING_TYPE and (handle != ciptypes.STRING_HANDLE or not data
                                          or len(data) % ciptypes.LOGIX_STRING_SIZE):
        return list(data)
    if tag_type == CIP_STRING:
        padded = ciptypes.decode_padded_strings(data)
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


# --- reply records ------------------------------------------------------------------

_SERVICE_NAMES = {
    Service.READ_TAG: "read_tag", Service.READ_TAG_FRAGMENTED: "read_frag", Service.WRITE_TAG: "write_tag",
    Service.WRITE_TAG_FRAGMENTED: "write_frag", Service.GET_ATTRIBUTES_ALL: "get_attributes_all",
    Service.GET_ATTRIBUTE_SINGLE: "get_attribute_single",
    Service.SET_ATTRIBUTE_SINGLE: "set_attribute_single", Service.MULTIPLE_SERVICE_PACKET: "multiple",
}


def reply_record(data: bytes, rpy: CIPReply | None = None) -> dotdict:
    """A CIP reply as a dotted record: service, status, status_ext, and the decoded payload
    under the service's name (read_frag.data, get_attribute_single.data, multiple.request, ...)."""
    if rpy is None:
        rpy = decode_cip_reply(data)
    rec = _layer(service=rpy.service | 0x80, status=rpy.status, input=bytes(data),
                 status_ext=_layer(size=len(rpy.ext_status), data=list(rpy.ext_status)))
    name = _SERVICE_NAMES.get(rpy.service)
    if name is None:
        if rpy.data:
            dict.__setitem__(rec, "data", list(rpy.data))
        return rec
    value: Any = True
    if name in ("read_tag", "read_frag"):
        if rpy.status in (0, Status.PARTIAL_TRANSFER) and len(rpy.data) >= 2:
            tag_type, handle, raw = split_typed(rpy.data)
            value = _layer(type=tag_type, raw=raw, data=decode_values(tag_type, raw, handle))
            if handle is not None:
                dict.__setitem__(value, "handle", handle)
    elif name in ("get_attributes_all", "get_attribute_single"):
        value = _layer(data=list(rpy.data))
    elif name == "multiple" and rpy.status in (0, Status.EMBEDDED_SERVICE_ERROR) and rpy.data:
        parts = [reply_record(part) for part in decode_msp(rpy.data)]
        value = _layer(number=len(parts), request=parts)
    dict.__setitem__(rec, name, value)
    return rec


def _layer(**items: Any) -> dotdict:
    """A dotdict of plain (undotted) keys, built without per-key parsing."""
    layer = dict.__new__(dotdict)
    dict.update(layer, items)
    return layer


# --- encapsulated requests and the replies to List Identity / Services / Interfaces -----

def frame(command: int, payload: bytes = b"", session: int = 0, context: bytes = b"\0" * 8) -> bytes:
    return encapsulation.encode(command, payload, session=session, context=context)


def rr_data(cip: bytes, timeout: int = 0) -> bytes:
    return cpf.encode_rr_data(cip, timeout=timeout)


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
            rec["identity_object"] = _flat(_identity_object(cpf.IdentityItem.decode(item.data)))
        elif item.type_id == cpf.LIST_SERVICES:
            service = cpf.CommunicationsService.decode(item.data, strict=False)
            rec["communications_service"] = dotdict(version=service.version, capability=service.capability,
                                                    service_name=service.name)
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


def _identity_object(ident: cpf.IdentityItem) -> dict[str, Any]:
    """A List Identity item's fields, as ``identity_object`` of the reply names them."""
    return {"version": ident.version, "sin_family": ident.sin_family, "sin_port": ident.sin_port,
            "sin_addr": ident.sin_addr, "vendor_id": ident.vendor_id, "device_type": ident.device_type,
            "product_code": ident.product_code,
            "product_revision": ident.revision[0] | ident.revision[1] << 8, "status_word": ident.status,
            "serial_number": ident.serial_number, "product_name": ident.product_name, "state": ident.state}


def _flat(fields: dict[str, Any]) -> dotdict:
    """A dotdict of keys without dots or indices, holding no mapping that is not a dotdict: made
    at once (a poller sees 100,000 identities), not key by key."""
    record = dotdict()
    dict.update(record, fields)
    return record


def _identity(obj: Mapping[str, Any]) -> dotdict:
    rev = obj["product_revision"]
    return _flat({**obj, "product_type": obj["device_type"], "status": obj["status_word"],
                  "revision": _flat({"major": rev & 0xFF, "minor": rev >> 8})})


def identity_record(reply: dotdict) -> dotdict | None:
    """The identity of a List Identity reply, flattened for callers: product_name,
    serial_number, vendor_id, product_type, product_code, revision, status, state, ..."""
    obj = reply.get("enip.CIP.list_identity.CPF.item[0].identity_object")
    return _identity(obj) if obj else None


def identity_of(header: encapsulation.Header, payload: bytes) -> dotdict | None:
    """:func:`identity_record` of a List Identity reply, made from its first item without the
    whole reply record (None: an error status, or no identity item)."""
    if header.status or not payload:
        return None
    items = cpf.decode_items(payload)
    if not items or items[0].type_id != cpf.LIST_IDENTITY:
        return None
    return _identity(_identity_object(cpf.IdentityItem.decode(items[0].data)))
