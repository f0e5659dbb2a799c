"""What every device kind is (:class:`Kind`) and the server limits all kinds share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

from fleet.table import Table


class Kind(ABC):
    """What the fleet knows of one device kind."""

    name: ClassVar[str]  # the ``kind = "..."`` of fleet.toml
    default_port: ClassVar[int]  # port of a device whose table gives none
    spec_key: ClassVar[str]  # the key holding the device's data specs (tags, registers)
    Options: ClassVar[type]  # frozen dataclass of the kind's own keys, with their defaults
    identity: ClassVar[Mapping[str, type]]  # identity keys fleet.toml accepts: int or str
    sockets: ClassVar[int] = 1  # file descriptors one served device holds (its listening sockets)

    @property
    def keys(self) -> frozenset[str]:
        """The kind's own fleet.toml keys."""
        return frozenset(f.name for f in fields(self.Options))

    def metrics_labels(self) -> dict[str, str]:
        """Labels every metric of a device of this kind carries."""
        return {"kind": self.name, "protocol": self.protocol}

    protocol: ClassVar[str]  # the wire protocol, for labels and messages

    @abstractmethod
    def options(self, t: Table) -> Any:
        """Read and check the kind's keys of one [[device]] table (ConfigError naming the key)."""

    def options_from_json(self, data: Mapping[str, Any]) -> Any:
        """``Options`` from its JSON form (lists back to tuples)."""
        return self.Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @abstractmethod
    def build(self, options: Any, identity: Mapping[str, Any], *, n: int = 0, retain: str | None = None,
              home: str | Callable[[str], str] = "") -> Any:
        """The device model (no sockets); ValueError naming what the protocol library refuses.
        ``n``: the device's number (behaviour parameters use it); ``retain``: the journal
        keeping client writes; ``home``: the directory playback file names are relative to."""

    def label(self, name: str) -> str:
        """How a one-line error names a driven value of the device's plant (a tag)."""
        return f"tag {name!r}"

    def check_patterned(self, model: Any, ns: Iterable[int], home: str | Callable[[str], str] = "") -> None:
        """ValueError naming the value and the device if a behaviour of ``model`` (a group's
        device, built) patterned on ``n`` does not fit its type on another device ``n`` of
        ``ns``: what building each of them would refuse, at the cost of its shapes only."""
        from cpppo.behaviour.spec import check_devices

        units = getattr(model, "devices", None)
        models = units.values() if isinstance(units, Mapping) else (model,)  # a line's units
        base = _relative_to(home)
        for each in models:
            plant = getattr(each, "plant", None)
            for name, driver in (plant.drivers.items() if plant else ()):
                if driver.spec is not None and driver.spec.patterned:
                    try:
                        check_devices(driver.spec.text, driver.vtype, driver.length, ns, base=base)
                    except ValueError as exc:
                        raise ValueError(f"{self.label(name)}: {exc}") from None

    @abstractmethod
    def check_identity(self, identity: Mapping[str, Any]) -> None:
        """ValueError if the protocol library would refuse these identity values (cheap: the
        plan checks every device's own values)."""

    @abstractmethod
    async def serve(self, model: Any, host: str, port: int, delay: Any, options: Any = None,
                    pool: Any = None) -> Any:
        """Serve a built model; the handle has ``close()`` and ``wait_closed()``.  ``options``
        (the kind's Options) gives the server's connection limits; ``pool`` (a
        ``cpppo.server.stream.ConnectionSet``) caps the worker's connections as a whole."""

    @abstractmethod
    def client(self, host: str, port: int, options: Any, timeout: float) -> Any:
        """An (unopened) asyncio client of a device, for the health poller."""

    def idle_default(self) -> float | None:
        """Seconds the kind's server lets a connection stay silent when ``idle_timeout`` is
        unset (None: forever)."""
        return None

    async def open(self, client: Any) -> None:
        """Connect the health poller's ``client`` and ask what is asked once a connection (ENIP:
        the identity): the connection's setup, which may outlast one poll's timeout."""
        await client.__aenter__()

    @abstractmethod
    async def check(self, client: Any, options: Any, identity: Mapping[str, Any]) -> None:
        """One health check through an open ``client``; raises when the device is not well."""

    @abstractmethod
    def health(self, options: Any) -> NamedTuple:
        """What :meth:`check` reads (structured: a TagRead, a RegisterRead)."""

    # -- the fleet page: what a device says it is and holds, through an open :meth:`client` ----
    async def device_identity(self, device: Any, connect: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        """What the device says it is (``connect()``: its open client); by default the plan's
        identity, for protocols with no identity service the page reads."""
        return dict(device.identity_dict)

    @abstractmethod
    async def values(self, client: Any, options: Any, shown: int) -> list[dict[str, Any]]:
        """``[{"name", "type", "first", "values"}, ...]``: the first ``shown`` elements of each
        tag or range the device's options configure, read through an open ``client``."""

    @abstractmethod
    async def write(self, client: Any, device: Any, target: str, text: str) -> None:
        """Write ``text`` (as the page's user typed it) to ``target`` (a tag, a register
        number...); :class:`WriteError` (one line) for a request the device cannot take."""

    # -- planning: what a kind whose devices are not all at an IP:port of their own changes ----
    def addressed(self, options: Any) -> bool:
        """Whether the devices of a group with these options each take an IP:port."""
        return True

    def arrange(self, devices: list[Any], config: Any) -> list[Any]:
        """The planned devices (all the fleet's, in plan order) with this kind's fleet-wide
        choices made (ConfigError for what no worker could serve); unchanged by default."""
        return devices

    def together(self, device: Any) -> str | None:
        """A name the devices one worker must host together share (None: any worker)."""
        return None

    def endpoint(self, device: Any) -> str:
        """Where a client reaches the device, as plan and status show it."""
        return f"{device.host}:{device.port}"

    def wire(self, device: Any) -> str | None:
        """A name the devices sharing one wire share (a serial line: the health poller polls
        them one at a time); None: the device has a connection of its own."""
        return None


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits every kind's [[device]] table may set (unset: the server's default)."""

    max_connections: int | None = None  # connections per device; one more evicts the longest idle
    idle_timeout: float | None = None  # seconds a connection may stay silent (0: forever)
    max_in_flight: int | None = None  # delayed replies one connection may have waiting


_LIMIT_TYPES = {"max_connections": (int,), "idle_timeout": (int, float), "max_in_flight": (int,)}


def read_limits(t: Table) -> dict[str, Any]:
    """The :class:`ServerLimits` keys a [[device]] table sets, checked."""
    return {key: (float if float in kinds else int)(t.positive(key, None, kinds, zero=key == "idle_timeout"))
            for key, kinds in _LIMIT_TYPES.items() if key in t.data}


def limits(options: Any) -> dict[str, Any]:
    """The limits ``options`` sets, as server settings keywords.

    >>> from fleet.kinds import ModbusOptions
    >>> limits(ModbusOptions(max_connections=16)), limits(None)
    ({'max_connections': 16}, {})
    """
    return {f.name: getattr(options, f.name) for f in fields(ServerLimits)
            if options is not None and getattr(options, f.name, None) is not None}


def _relative_to(home: str | Callable[[str], str]) -> Callable[[str], str]:
    """Resolves a file name (a playback recording, a ``tags_from`` export) against the fleet
    file's directory ``home``; a callable ``home`` is that resolver already
    (:func:`fleet.worker.files_base`: a container's view of the files, or the docker backend
    noting which files a device reads)."""
    import os.path

    if callable(home):
        return home
    return lambda name: os.path.join(home, name) if home else name


class WriteError(ValueError):
    """A write the device (or the request) refused: the message says why."""


class IdentityMismatch(Exception):
    """The device at the planned address answers as another device."""
