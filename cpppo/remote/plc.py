"""The remote-PLC "poller" metaphor (spec section 3).

A poller is given a poll rate and some addresses; it reads them from the PLC in the
background, ``read(address)`` returns the latest known value (None until polled, or while the
PLC is offline) and ``write(address, value)`` changes the value in the PLC synchronously.

``rate`` is the poll period in seconds (``rate=.5`` polls twice a second); asking ``poll``
for a new rate only ever makes polling faster.  ``load`` is the (1, 5, 15)-minute I/O load:
the fraction of each poll period spent doing the polls, averaged over about the last 1, 5 and
15 minutes.

Protocol pollers (:mod:`cpppo.remote.plc_modbus`) implement ``_poll``, ``_write`` and the
polling itself; this base keeps the values and the rate.
"""

from __future__ import annotations

import math
import threading
from typing import Any

__all__ = ["PlcError", "PlcOffline", "moving_loads", "poller"]


class PlcError(Exception):
    """A PLC refused a request (e.g. a Modbus exception reply)."""


class PlcOffline(PlcError):
    """The PLC could not be reached, or did not answer in time."""


LOAD_MINUTES = (1, 5, 15)


def moving_loads(loads: tuple[float, float, float], sample: float, period: float
                 ) -> tuple[float, float, float]:
    """Fold one poll's load ``sample`` (taken ``period`` seconds after the previous one) into
    the exponentially decaying 1/5/15-minute averages, as Unix load averages are kept.

    >>> moving_loads((0.0, 0.0, 0.0), 1.0, 60.0)[0] > 0.6
    True
    """
    return tuple(  # type: ignore[return-value]
        old + (sample - old) * (1.0 - math.exp(-period / (60.0 * minutes)))
        for old, minutes in zip(loads, LOAD_MINUTES, strict=True)
    )


class poller:  # noqa: N801 - the spec's name
    """Base of the protocol pollers: latest values by address, the shared rate, the load."""

    def __init__(self, description: str | None = None, rate: float | None = None) -> None:
        self.description = description
        self.rate = rate
        self.load: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._data: dict[Any, Any] = {}
        self._data_lock = threading.Lock()

    def __str__(self) -> str:
        return f"{self.description or type(self).__name__}"

    def poll(self, address: Any, rate: float | None = None) -> None:
        """Begin polling ``address``; ``rate`` (seconds) can only make polling faster."""
        if rate is not None:
            if rate <= 0:
                raise ValueError(f"poll rate {rate} must be a positive number of seconds")
            self.rate = min(self.rate or rate, rate)
        self._poll(address)

    def read(self, address: Any) -> Any:
        """The latest polled value of ``address``, or None (not yet polled, or offline)."""
        with self._data_lock:
            return self._data.get(address)

    def write(self, address: Any, value: Any) -> None:
        """Write ``value`` to ``address`` in the PLC; returns when the PLC has answered."""
        self._write(address, value)

    def _store(self, address: Any, value: Any) -> None:
        with self._data_lock:
            self._data[address] = value

    def _poll(self, address: Any) -> None:
        raise NotImplementedError

    def _write(self, address: Any, value: Any) -> None:
        raise NotImplementedError
