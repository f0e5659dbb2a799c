"""Light validation of ``enip_server`` tag specs (``SCADA=INT[1000]``, ``F@22/1/3=REAL``) for
fleet.toml, without importing the ENIP server: the worker hands the specs verbatim to
``cpppo.enip.device.model.Device.from_specs``, which remains the authority."""

from __future__ import annotations

import re
from dataclasses import dataclass

CIP_TYPES = frozenset({
    "BOOL", "SINT", "INT", "DINT", "LINT", "USINT", "UINT", "UDINT", "ULINT",
    "REAL", "LREAL", "SSTRING", "STRING", "BYTE", "WORD", "DWORD", "LWORD",
})
NUMERIC = CIP_TYPES - {"SSTRING", "STRING"}

_TAG = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:@(?P<path>[^=]+))?"
    r"=(?P<type>[A-Za-z]+)(?:\[(?P<length>[0-9]+)\])?$"
)
_PATH_PART = re.compile(r"^(0x[0-9A-Fa-f]+|[0-9]+)$")


@dataclass(frozen=True)
class TagSpec:
    """One tag: ``name[@class/instance/attribute]=TYPE[length]``."""

    spec: str  # the text as written
    name: str  # the tag name
    type: str  # CIP type name, upper case
    length: int | None  # array length, None for a scalar

    @property
    def health_read(self) -> str:
        """What the health poller reads: the first element, or the scalar."""
        return f"{self.name}[0]" if self.length is not None else self.name


def parse_tag_spec(spec: str) -> TagSpec:
    """Check one tag spec; raise ValueError naming it and what is wrong.

    >>> parse_tag_spec("SCADA@22/1/1=INT[1000]").health_read
    'SCADA[0]'
    """
    m = _TAG.match(spec.strip())
    if not m:
        raise ValueError(f"bad tag spec {spec!r}: expected NAME[@class/instance/attribute]=TYPE[length]")
    cip_type = m["type"].upper()
    if cip_type not in CIP_TYPES:
        raise ValueError(f"bad tag spec {spec!r}: unknown type {m['type']!r} "
                         f"(known: {', '.join(sorted(CIP_TYPES))})")
    if m["path"] is not None:
        parts = m["path"].split("/")
        if len(parts) != 3 or not all(_PATH_PART.match(p) for p in parts):
            raise ValueError(f"bad tag spec {spec!r}: address must be @class/instance/attribute numbers")
    length = int(m["length"]) if m["length"] is not None else None
    if length is not None and not 1 <= length <= 65535:
        raise ValueError(f"bad tag spec {spec!r}: length must be 1..65535")
    return TagSpec(spec=spec.strip(), name=m["name"], type=cip_type, length=length)
