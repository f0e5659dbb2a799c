"""The CIP TCP/IP Interface Object's (class 0xF5, instance 1) Get Attributes All reply.

It mixes several types (a sized EPATH, IP addresses, padded STRINGs); ``decode_tcpip`` turns
it into the list the spec's poll example shows (the ``TCPIP`` proxy parameter uses it)::

    TCPIP: [2, 48, 0, [{'class': 246}, {'instance': 1}], '192.168.0.201', '255.255.255.0',
            '0.0.0.0', '8.8.8.8', '8.8.4.4', 'example.com', 'controller']

(Status, Configuration Capability, Configuration Control, Physical Link Object path, IP address,
network mask, gateway, primary and secondary DNS, domain name, host name.)

>>> raw = bytes([2, 0, 0, 0, 48, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x20, 0xF6, 0x24, 1,
...              201, 0, 168, 192, 0, 255, 255, 255] + [0] * 4 + [8] * 4 + [4, 4, 8, 8]
...             + [3, 0] + list(b"abc") + [0] + [2, 0] + list(b"pc"))
>>> decode_tcpip(raw)[:4]
[2, 48, 0, [{'class': 246}, {'instance': 1}]]
>>> decode_tcpip(raw)[4:]
['192.168.0.201', '255.255.255.0', '0.0.0.0', '8.8.8.8', '8.8.4.4', 'abc', 'pc']
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import Any

from cpppo.enip.codec import epath
from cpppo.enip.codec.errors import CodecError
from cpppo.enip.codec.types import STRING, encode_padded_strings

__all__ = ["decode_tcpip", "encode_host_name", "encode_interface", "encode_link_path"]


_INTERFACE = struct.Struct("<5I")  # IP address, network mask, gateway, primary and secondary DNS
_WORDS = struct.Struct("<H")


def encode_link_path(segments: Sequence[epath.Segment]) -> bytes:
    """Attribute 4, the Physical Link Object: the path's size in 16-bit words (UINT), then
    the padded EPATH."""
    path = epath.encode(tuple(segments))
    return _WORDS.pack(len(path) // 2) + path


def encode_interface(addresses: Sequence[str], domain: str) -> bytes:
    """Attribute 5, the Interface Configuration: the IP address, network mask, gateway and
    primary and secondary DNS (five UDINTs), then the domain name (a padded CIP STRING);
    CodecError (a ValueError) naming an address that is not IPv4."""
    numbers = []
    for text in addresses:
        try:
            numbers.append(int(ipaddress.IPv4Address(text)))
        except ValueError:
            raise CodecError(f"TCPIP address {text!r} is not an IPv4 address") from None
    return _INTERFACE.pack(*numbers) + encode_host_name(domain)


def encode_host_name(name: str) -> bytes:
    """Attribute 6, the Host Name (and the domain name of attribute 5): a CIP STRING padded to
    an even size (characters outside ISO-8859-1 become '?')."""
    return encode_padded_strings([name.encode("iso-8859-1", "replace")])


def _segment_dict(seg: epath.Segment) -> dict[str, Any]:
    if isinstance(seg, epath.Logical):
        return {seg.kind: seg.value}
    if isinstance(seg, epath.Symbolic):
        return {"symbolic": seg.name}
    if isinstance(seg, epath.Port):
        return {"port": seg.port, "link": seg.link}
    return {"data": bytes(seg.data)}


def _need(data: bytes, end: int, what: str) -> None:
    if end > len(data):
        raise CodecError(f"TCP/IP object reply truncated in the {what}: {len(data)} bytes")


def _string(data: bytes, at: int, what: str) -> tuple[str, int]:
    """A CIP STRING (UINT length, characters, padded to an even length) at ``at``: the codec's
    STRING, the pad as :func:`~cpppo.enip.codec.types.encode_padded_strings` writes it (a
    missing last pad tolerated)."""
    try:
        (piece,) = STRING.split(data[at:], limit=1)
    except ValueError:  # a CodecError, or nothing left at all
        raise CodecError(f"TCP/IP object reply truncated in the {what}: {len(data)} bytes") from None
    (text,) = STRING.decode(piece)
    return text, min(len(data), at + len(piece) + len(piece) % 2)


def decode_tcpip(raw: Sequence[int] | bytes) -> list[Any]:
    """The TCP/IP Interface Object's Get Attributes All reply as a list (see the module
    docstring); raises CodecError (a ValueError) naming the truncated field."""
    data = bytes(raw)
    _need(data, 14, "status, capability, control and path size")
    status, capability, control, words = struct.unpack_from("<3IH", data)
    end = 14 + 2 * words
    _need(data, end, "physical link object path")
    link = [_segment_dict(seg) for seg in epath.decode(data[14:end])]
    _need(data, end + 20, "interface addresses")
    addresses = [str(ipaddress.IPv4Address(n)) for n in _INTERFACE.unpack_from(data, end)]
    domain, at = _string(data, end + 20, "domain name")
    host, at = _string(data, at, "host name")
    return [status, capability, control, link, *addresses, domain, host]
