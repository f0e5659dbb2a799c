"""The standard CIP objects every simulated controller carries, as Attributes in
``device.objects``: Identity (1), Message Router (2), Connection Manager (6), Logix program
name (0x64), the Logix STRING template (0x6C), TCP/IP Interface (0xF5), Ethernet Link (0xF6).

Composite attribute values (revision, interface configuration, link path, MAC) are stored
as USINT arrays of their encoded bytes, so Get/Set Attribute Single see exactly the wire form.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cpppo.enip.codec import tcpip
from cpppo.enip.codec.epath import Logical
from cpppo.enip.codec.logix import TEMPLATE_CLASS, encode_template, template_words
from cpppo.enip.codec.types import (
    LOGIX_STRING_SIZE,
    SSTRING,
    STRING,
    STRING_HANDLE,
    UDINT,
    UINT,
    ULINT,
    USINT,
    CIPType,
)
from cpppo.enip.device.attribute import Attribute

if TYPE_CHECKING:
    from cpppo.enip.device.model import Device

__all__ = ["GET_ALL_ATTRIBUTES", "STRING_TEMPLATE", "install_standard_objects", "standard_objects"]

IDENTITY, MESSAGE_ROUTER, CONNECTION_MANAGER = 0x01, 0x02, 0x06
PROGRAM_NAME, WALL_CLOCK, TCPIP, ETHERNET_LINK = 0x64, 0x8B, 0xF5, 0xF6

#: which attributes Get Attributes All concatenates, per class (others: all, in id order)
GET_ALL_ATTRIBUTES = {IDENTITY: tuple(range(1, 11)), TCPIP: (1, 2, 3, 4, 5, 6), ETHERNET_LINK: (1, 2, 3)}


#: the Logix STRING template, as Read Template (0x4C at @0x6C/0x0FCE) serves it: LEN (a DINT
#: at 0), DATA (82 SINTs at 4), then the structure's and the members' names
STRING_TEMPLATE = encode_template([(0, 0xC4, 0), (82, 0xC2, 4)], b"ASCIISTRING82\0LEN\0DATA\0")
#: the template's object definition size, in 32-bit words
STRING_TEMPLATE_WORDS = template_words(STRING_TEMPLATE)


class ClockAttribute(Attribute):
    """The controller's wall clock (ULINT microseconds since 1970 UTC), read live."""

    def __getitem__(self, key: int | slice) -> Any:
        now = time.time_ns() // 1000
        return [now] if self._validate_key(key) is slice else now


def _mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        mac = b""
    if len(mac) != 6:
        raise ValueError(f"TCPIP mac_address {text!r} is not six hex octets")
    return mac


def _octets(data: bytes) -> list[int]:
    return list(data)


def install_standard_objects(device: Device) -> None:
    """Populate ``device.objects`` with the standard objects from its identity and tcpip
    (ValueError naming a TCPIP value that cannot be encoded)."""
    objects = device.objects
    for where, attrs in standard_objects(device).items():
        objects.setdefault(where, {}).update(attrs)


def standard_objects(device: Device) -> dict[tuple[int, int], dict[int, Attribute]]:
    """The standard objects of ``device``, made from its identity and tcpip."""
    ident, net = device.identity, device.tcpip
    objects: dict[tuple[int, int], dict[int, Attribute]] = {}

    def put(cls_id: int, instance: int, attr_id: int, name: str, ctype: CIPType, value: Any,
            settable: bool = False) -> Attribute:
        attr = Attribute(name, ctype, default=value, mask=0 if settable else 1)  # never customised
        objects.setdefault((cls_id, instance), {})[attr_id] = attr
        return attr

    put(IDENTITY, 1, 1, "Vendor ID", UINT, ident["vendor_id"])
    put(IDENTITY, 1, 2, "Device Type", UINT, ident["device_type"])
    put(IDENTITY, 1, 3, "Product Code", UINT, ident["product_code"])
    put(IDENTITY, 1, 4, "Revision", USINT, list(ident["revision"]))
    put(IDENTITY, 1, 5, "Status", UINT, ident["status"])
    put(IDENTITY, 1, 6, "Serial Number", UDINT, ident["serial_number"])
    put(IDENTITY, 1, 7, "Product Name", SSTRING, ident["product_name"], settable=True)
    put(IDENTITY, 1, 8, "State", USINT, ident["state"])
    put(IDENTITY, 1, 9, "Configuration Consistency Value", UINT, 0)
    put(IDENTITY, 1, 10, "Heartbeat Interval", USINT, 0, settable=True)
    put(IDENTITY, 0, 1, "Revision", UINT, 1)

    classes = [IDENTITY, MESSAGE_ROUTER, CONNECTION_MANAGER, PROGRAM_NAME, 0x6B, TEMPLATE_CLASS,
               WALL_CLOCK, TCPIP, ETHERNET_LINK]
    put(MESSAGE_ROUTER, 1, 1, "Object List", UINT, [len(classes), *classes])
    put(MESSAGE_ROUTER, 1, 2, "Number Available", UINT, 1)
    for attr_id, name in enumerate(("Open Requests", "Open Format Rejects", "Open Resource Rejects",
                                    "Open Other Rejects", "Close Requests", "Close Format Requests",
                                    "Close Other Requests", "Connection Timeouts"), start=1):
        put(CONNECTION_MANAGER, 1, attr_id, name, UINT, 0)

    put(PROGRAM_NAME, 1, 1, "Program Name", STRING, ident["program_name"])
    for attr_id in (6, 0x0B):  # current UTC time and local time, as Logix clients read them
        objects.setdefault((WALL_CLOCK, 1), {})[attr_id] = ClockAttribute("Wall Clock", ULINT, mask=1)

    put(TEMPLATE_CLASS, STRING_HANDLE, 1, "Structure Handle", UINT, STRING_HANDLE)
    put(TEMPLATE_CLASS, STRING_HANDLE, 2, "Member Count", UINT, 2)
    put(TEMPLATE_CLASS, STRING_HANDLE, 3, "Template CRC", UINT, STRING_HANDLE)
    put(TEMPLATE_CLASS, STRING_HANDLE, 4, "Object Definition Size", UDINT, STRING_TEMPLATE_WORDS)
    put(TEMPLATE_CLASS, STRING_HANDLE, 5, "Structure Size", UDINT, LOGIX_STRING_SIZE)

    addresses = ("ip_address", "network_mask", "gateway_address", "dns_primary", "dns_secondary")
    interface = tcpip.encode_interface([str(net[key]) for key in addresses], str(net["domain_name"]))
    link = tcpip.encode_link_path((Logical("class", ETHERNET_LINK), Logical("instance", 1)))
    put(TCPIP, 1, 1, "Status", UDINT, int(net["status"]))
    put(TCPIP, 1, 2, "Configuration Capability", UDINT, int(net["configuration_capability"]))
    put(TCPIP, 1, 3, "Configuration Control", UDINT, int(net["configuration_control"]), settable=True)
    put(TCPIP, 1, 4, "Physical Link Object", USINT, _octets(link))
    put(TCPIP, 1, 5, "Interface Configuration", USINT, _octets(interface), settable=True)
    host = tcpip.encode_host_name(str(net["host_name"]))
    put(TCPIP, 1, 6, "Host Name", USINT, _octets(host), settable=True)
    put(TCPIP, 0, 1, "Revision", UINT, 4)

    put(ETHERNET_LINK, 1, 1, "Interface Speed", UDINT, int(net["interface_speed"]))
    put(ETHERNET_LINK, 1, 2, "Interface Flags", UDINT, 0x0F)
    put(ETHERNET_LINK, 1, 3, "Physical Address", USINT, _octets(_mac(str(net["mac_address"]))))
    put(ETHERNET_LINK, 0, 1, "Revision", UINT, 3)
    return objects
