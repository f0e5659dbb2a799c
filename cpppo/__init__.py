"""cpppo: Communication Protocol Python Parser and Originator.

EtherNet/IP CIP and Modbus/TCP simulators and clients, regex-built state machines and
high-precision timestamps.  The names the spec uses at the top level live here:
``cpppo.dotdict``, ``cpppo.peekable``, ``cpppo.timer``, ``cpppo.log_cfg``, and the state
machines ``cpppo.state``, ``state_input``, ``state_drop``, ``dfa``, ``regex`` and ``regex_bytes``.
"""

from __future__ import annotations

from cpppo.automata import (
    RegexError,
    dfa,
    regex,
    regex_bytes,
    state,
    state_drop,
    state_input,
)
from cpppo.dotdict import dotdict
from cpppo.log import DETAIL, NORMAL, log_cfg
from cpppo.peekable import peekable
from cpppo.timing import timer, wall

__version__ = "0.1.0"

__all__ = [
    "DETAIL", "NORMAL", "RegexError", "__version__", "dfa", "dotdict", "log_cfg", "peekable",
    "regex", "regex_bytes", "state", "state_drop", "state_input", "timer", "wall",
]
