"""Behaviours: values that move, follow one another, play back recordings, and are retained.

Pure: this package knows values and time, nothing of sockets.  The ENIP device model
(:mod:`cpppo.enip.device.model`) and the Modbus device (:mod:`cpppo.modbus.device`) attach a
:class:`~cpppo.behaviour.driver.Driver` to a tag or register range, and produce its values
when a client reads them, from the device's :class:`~cpppo.behaviour.driver.Plant` clock
(a :class:`~cpppo.behaviour.clock.FakeClock` in tests).  The grammar is in
:mod:`cpppo.behaviour.spec`; retained writes in :mod:`cpppo.behaviour.retain`.

>>> from cpppo.behaviour import FakeClock, Plant, ValueType, build_driver
>>> plant = Plant(FakeClock(wall=0.0))
>>> counts = build_driver("counter(rate=2, high=9)", plant, ValueType("INT", "int", -32768, 32767))
>>> [counts.values()[0] for _ in range(3) if not plant.clock.advance(2)]
[4, 8, 2]
"""

from cpppo.behaviour.clock import Clock, FakeClock, SystemClock
from cpppo.behaviour.driver import Driver, Plant, ValueType
from cpppo.behaviour.retain import Journal
from cpppo.behaviour.spec import KINDS, BehaviourSpec, build_driver, parse_behaviour

__all__ = ["KINDS", "BehaviourSpec", "Clock", "Driver", "FakeClock", "Journal", "Plant", "SystemClock",
           "ValueType", "build_driver", "parse_behaviour"]
