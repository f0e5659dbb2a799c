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
from cpppo.enip.codec.types import STRING

__all__ = ["decode_tcpip"]


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
    addresses = [str(ipaddress.IPv4Address(n)) for n in struct.unpack_from("<5I", data, end)]
    domain, at = _string(data, end + 20, "domain name")
    host, at = _string(data, at, "host name")
    return [status, capability, control, link, *addresses, domain, host]
