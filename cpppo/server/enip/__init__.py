"""EtherNet/IP CIP: codec, device model, asyncio server, and clients.

The CIP types are importable from here, as the spec's customisation examples do
(``from cpppo.server.enip import device, REAL``)."""

from cpppo.enip.codec.types import (
    BOOL,
    DINT,
    INT,
    LINT,
    LREAL,
    REAL,
    SINT,
    SSTRING,
    STRING,
    UDINT,
    UINT,
    ULINT,
    USINT,
)
from cpppo.server.enip.enip_format import enip_format as enip_format

__all__ = ["BOOL", "DINT", "INT", "LINT", "LREAL", "REAL", "SINT", "SSTRING", "STRING", "UDINT", "UINT",
           "ULINT", "USINT"]
