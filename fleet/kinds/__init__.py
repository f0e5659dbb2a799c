"""Device kinds as a table: one :class:`Kind` per protocol, in :data:`KINDS`.

A kind knows everything the fleet does differently for its devices: its own fleet.toml keys
and their defaults (an ``Options`` dataclass and :meth:`Kind.options`, which reads them),
its identity keys, its default port, how a worker builds and serves a device, how the health
poller checks one, and its metrics labels.  Validation and the worker share
:meth:`Kind.build`: ``validate`` builds each group's device model (no sockets) with the same
call the worker makes, so a fleet that validates is a fleet the workers serve.

One module a kind (:mod:`fleet.kinds.enip`, :mod:`~fleet.kinds.modbus`,
:mod:`~fleet.kinds.modbus_rtu`) on :mod:`fleet.kinds.base`.  Adding a kind is one more module and
one more entry in :data:`KINDS`; adding a key to a kind is
one more field in its ``Options`` and one more line in its ``options()``.  The protocol
libraries are imported inside the methods: ``cpppo-fleet --help`` stays light.
"""


from __future__ import annotations

from fleet.kinds.base import IdentityMismatch, Kind, ServerLimits, WriteError, limits, read_limits
from fleet.kinds.enip import EnipKind, EnipOptions, IOOptions, TagRead
from fleet.kinds.modbus import ModbusKind, ModbusOptions, RegisterRead
from fleet.kinds.modbus_rtu import ModbusRtuKind, ModbusRtuOptions

__all__ = ["KINDS", "EnipKind", "EnipOptions", "IOOptions", "IdentityMismatch", "Kind", "ModbusKind",
           "ModbusOptions", "ModbusRtuKind", "ModbusRtuOptions", "RegisterRead", "ServerLimits", "TagRead",
           "WriteError", "kind", "limits", "read_limits"]


KINDS: dict[str, Kind] = {k.name: k for k in (EnipKind(), ModbusKind(), ModbusRtuKind())}


def kind(name: str) -> Kind:
    """The kind called ``name`` (KeyError for none)."""
    return KINDS[name]
