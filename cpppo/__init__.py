"""cpppo: Communication Protocol Python Parser and Originator.

EtherNet/IP CIP and Modbus/TCP simulators and clients, regex-built state machines and
high-precision timestamps.  The names the spec uses at the top level live here:
``cpppo.dotdict``, ``cpppo.peekable``, ``cpppo.timer``, ``cpppo.log_cfg``.
"""

from __future__ import annotations

from cpppo.dotdict import dotdict
from cpppo.log import DETAIL, NORMAL, log_cfg
from cpppo.peekable import peekable
from cpppo.timing import timer, wall

__version__ = "0.1.0"

__all__ = ["DETAIL", "NORMAL", "__version__", "dotdict", "log_cfg", "peekable", "timer", "wall"]
