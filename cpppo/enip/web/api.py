"""The simulator's web API model (spec 2.1.8): ``<group>/<match>/<command>/<value>`` over the
live device and server, answered as the JSON envelope upstream cpppo gives.

Groups and their entities (``match`` and ``group`` are shell globs, case-insensitive):

    options/delay           value (seconds, constant), range ("lo-hi", random per reply, or null)
    server/control          done, disable (booleans), latency, timeout (seconds), fault
                            (``KIND [ARG] [for DURATION]`` as ``cpppo-fleet fault``, or ``clear``)
    tags/<tag name>         attribute (summary; attribute[i] one element), error (CIP status)
    connections/<a_b_c_d_port>   eof (true closes it), interface, port, received, requests

Differences from upstream, where its thread-per-connection internals do not exist here:
``options.delay.value`` with a range active is the range's mean (each reply draws its own
delay, no value is "current"); ``range`` is always present (null for none).  ``latency`` and
``timeout`` are kept and reported, but the asyncio server reacts to every change at once, so
they change nothing.  ``disable`` also stops the UDP list service on the same port.

Errors a caller makes (no such tag, bad index or value, unknown command) raise ``APIError``
carrying an HTTP status; the HTTP layer turns it into a JSON body.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import reprlib
import time
from collections.abc import Callable
from typing import Any

from cpppo.enip.device.model import Attribute, Device, Tag
from cpppo.enip.server.transport import ServerHandle

__all__ = ["APIError", "WebAPI", "parse_bool"]

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^(?P<name>\w+)(?:\[(?P<index>[^\]]*)\])?$")
_GLOB = re.compile(r"[*?\[]")
_SUMMARY = reprlib.Repr()
_SUMMARY.maxlist = 6
_SUMMARY.maxstring = 40


class APIError(Exception):
    """A request the API cannot carry out: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, content: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.content = content  # the envelope, when a command failed on entities that exist


def parse_bool(text: str) -> bool:
    """``true``/``yes``/``false``/``no`` or a number (0 is False)."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return bool(int(lowered, 0))
    except ValueError:
        raise APIError(400, f"{text!r} is not a boolean (true/false)") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise APIError(400, f"{text!r} is not a number of seconds") from None
    if not 0 <= value < 86400:
        raise APIError(400, f"{text!r} seconds is outside 0-86400")
    return value


class _Entity:
    """One ``<group>/<match>`` target: its data and the commands it accepts."""

    commands: tuple[str, ...] = ()

    def data(self) -> dict[str, Any]:
        raise NotImplementedError

    def get(self, name: str, index: str | None) -> Any:
        if index is not None:
            raise APIError(400, f"{name} takes no index")
        return self.data()[name]

    async def set(self, name: str, index: str | None, text: str) -> Any:
        raise APIError(400, f"{name} is read-only")


class _Delay(_Entity):
    commands = ("value", "range")

    def __init__(self, server: ServerHandle) -> None:
        self.server = server

    def data(self) -> dict[str, Any]:
        delay = self.server.delay
        if isinstance(delay, tuple):
            return {"value": (delay[0] + delay[1]) / 2, "range": f"{delay[0]:g}-{delay[1]:g}"}
        return {"value": float(delay or 0.0), "range": None}

    async def set(self, name: str, index: str | None, text: str) -> Any:
        if name == "value":
            value = _seconds(text)
            self.server.delay = value or None
            return value
        low, sep, high = text.partition("-")
        if not sep:
            raise APIError(400, f"range {text!r} is not <lo>-<hi> seconds")
        lo, hi = _seconds(low), _seconds(high)
        if lo > hi:
            raise APIError(400, f"range {text!r}: low end is above the high end")
        self.server.delay = (lo, hi)
        return f"{lo:g}-{hi:g}"


class _Control(_Entity):
    commands = ("done", "disable", "latency", "timeout", "fault")

    def __init__(self, server: ServerHandle, on_done: Callable[[], None] | None) -> None:
        self.server = server
        self.on_done = on_done
        self.done = False
        self.latency = 0.1
        self.timeout = 0.2

    def data(self) -> dict[str, Any]:
        data = {"disable": not self.server.enabled and not self.done, "done": self.done,
                "latency": self.latency, "timeout": self.timeout}
        fault = self.server.device.faults.current()
        if fault is not None:  # only while one is injected: otherwise the answer spec 2.1.8 shows
            data["fault"] = fault.describe()
        return data

    async def _fault(self, text: str) -> Any:
        """``fault``: ``KIND [ARG] [for DURATION]`` as ``cpppo-fleet fault`` takes them
        (``latency 200ms..800ms``, ``error 0x08``, ``offline for 30s``), or ``clear``."""
        from cpppo.faults import FaultError, parse_fault

        faults = self.server.device.faults
        words = text.split()
        if words in ([], ["clear"], ["none"], ["null"]):
            faults.clear()
            await self._listen()
            return None
        duration = None
        if len(words) >= 2 and words[-2] == "for":
            duration, words = words[-1], words[:-2]
        if not 1 <= len(words) <= 2:
            raise APIError(400, f"fault {text!r}: expected KIND [ARG] [for DURATION], or clear")
        try:
            fault = parse_fault(words[0], words[1] if len(words) == 2 else None, duration=duration)
        except FaultError as exc:
            raise APIError(400, str(exc)) from None
        faults.set(fault)
        return fault.describe()

    async def _listen(self) -> None:
        try:
            await self.server.enable()
        except OSError as exc:
            raise APIError(503, f"cannot listen on port {self.server.port} again: "
                                f"{exc.strerror or exc}") from None

    async def set(self, name: str, index: str | None, text: str) -> Any:
        if name == "fault":
            if self.done:
                raise APIError(409, "the server is done")
            return await self._fault(text)
        if name in ("latency", "timeout"):
            value = _seconds(text)
            if value <= 0:
                raise APIError(400, f"{name} must be above 0 seconds")
            setattr(self, name, value)
            return value
        flag = parse_bool(text)
        if name == "disable":  # the same as an ``offline`` fault (cpppo.faults), until enabled again
            if self.done:
                raise APIError(409, "the server is done")
            faults = self.server.device.faults
            if flag:
                from cpppo.faults import parse_fault

                faults.set(parse_fault("offline"))
                self.server.disable()
            else:
                if faults.active is not None and faults.active.kind in ("offline", "flap"):
                    faults.clear()
                await self._listen()
            return flag
        if flag and not self.done:
            self.done = True
            log.warning("web API: server done")
            self.server.close()
            if self.on_done is not None:
                self.on_done()
        elif not flag and self.done:
            raise APIError(409, "a server that is done cannot be restarted")
        return flag


def summary(tag: Tag) -> str:
    """``SCADA          INT[1000] == [0, 0, 0, 0, 0, 0, ...]``: the tag at a glance."""
    attribute = tag.attribute
    shape = f"{attribute.parser.name}[{len(attribute)}]" if attribute.array else attribute.parser.name
    current = Attribute.__getitem__(attribute, slice(None))  # produced now, if it moves; no I/O hooks
    values = current if attribute.array else current[0]
    return f"{tag.name:<14} {shape:>10} == {_SUMMARY.repr(values)}"


class _TagEntity(_Entity):
    commands = ("attribute", "error")

    def __init__(self, tag: Tag) -> None:
        self.tag = tag

    def data(self) -> dict[str, Any]:
        return {"attribute": summary(self.tag), "error": self.tag.attribute.error}

    def _index(self, index: str) -> int:
        attribute = self.tag.attribute
        try:
            element = int(index, 0)
        except ValueError:
            raise APIError(400, f"index [{index}] of {self.tag.name} is not a number") from None
        if not 0 <= element < len(attribute):
            raise APIError(400, f"index [{element}] is outside {self.tag.name}[0-{len(attribute) - 1}]")
        return element

    def get(self, name: str, index: str | None) -> Any:
        if name == "attribute" and index is not None:
            return self.tag.attribute[self._index(index)]
        return super().get(name, index)

    def _value(self, text: str) -> Any:
        ctype = self.tag.attribute.parser
        try:
            return ctype.parse(text)
        except ValueError as exc:
            raise APIError(400, f"{text!r} is not a {ctype.name} value: {exc}") from None

    async def set(self, name: str, index: str | None, text: str) -> Any:
        attribute = self.tag.attribute
        if name == "attribute" and attribute.driver is not None:
            raise APIError(409, f"{self.tag.name} is driven by its behaviour ({attribute.driver.kind}); "
                                "it cannot be written")
        if name == "error":
            if index is not None:
                raise APIError(400, "error takes no index")
            try:
                code = int(text, 0)
            except ValueError:
                raise APIError(400, f"error {text!r} is not a number") from None
            if not 0 <= code <= 0xFF:
                raise APIError(400, f"error {code} is not a CIP general status (0-255)")
            attribute.error = code
            return code
        if index is not None:
            element, value = self._index(index), self._value(text)
            attribute[element] = value
            return value
        try:  # the whole tag: a JSON list (or, for a scalar, one value)
            values = json.loads(text)
        except ValueError:
            values = text
        values = values if isinstance(values, list) else [values]
        if len(values) != len(attribute):
            raise APIError(400, f"{self.tag.name} has {len(attribute)} elements; {len(values)} given")
        coerced = [self._value(v if isinstance(v, str) else json.dumps(v)) for v in values]
        attribute[0:len(coerced)] = coerced
        return coerced if attribute.array else coerced[0]


class _Connection(_Entity):
    commands = ("eof", "interface", "port", "received", "requests")

    def __init__(self, session: Any) -> None:
        self.session = session

    def data(self) -> dict[str, Any]:
        transport = self.session.transport
        peer = self.session.peer or ("", 0)
        return {"eof": transport is None or transport.is_closing(), "interface": peer[0], "port": peer[1],
                "received": self.session.received, "requests": self.session.requests}

    async def set(self, name: str, index: str | None, text: str) -> Any:
        if name != "eof":
            return await super().set(name, index, text)
        flag = parse_bool(text)
        if flag and self.session.transport is not None:
            self.session.transport.close()
        return flag


def connection_key(peer: Any) -> str:
    """``127_0_0_1_52590``: a connection's name in the ``connections`` group."""
    host, port = (peer or ("", 0))[:2]
    return re.sub(r"[^0-9A-Za-z]", "_", f"{host}_{port}")


class WebAPI:
    """The API over one device and its server.  ``on_done`` is called when a client sets
    ``server/control/done`` (the server is closed first)."""

    def __init__(self, device: Device, server: ServerHandle,
                 on_done: Callable[[], None] | None = None) -> None:
        self.device = device
        self.server = server
        self.delay = _Delay(server)
        self.control = _Control(server, on_done)

    def groups(self) -> dict[str, dict[str, _Entity]]:
        tags = {tag.name: _TagEntity(tag) for tag in self.device.tags.values()}
        connections = {connection_key(s.peer): _Connection(s) for s in list(self.server.sessions)}
        return {"options": {"delay": self.delay}, "server": {"control": self.control},
                "tags": tags, "connections": connections}

    async def request(self, group: str | None = None, match: str | None = None, command: str | None = None,
                      value: str | None = None, since: float | None = None) -> dict[str, Any]:
        """Carry out one request; the JSON-able envelope, or APIError.  ``value`` None reads."""
        group, match = group or "*", match or "*"
        groups = self.groups()
        targets = [(grp, name, entity) for grp, entities in groups.items()
                   if fnmatch.fnmatch(grp.lower(), group.lower())
                   for name, entity in entities.items() if fnmatch.fnmatch(name.lower(), match.lower())]
        if not _GLOB.search(group) and group.lower() not in groups:
            raise APIError(404, f"no group {group!r} (one of {', '.join(groups)})")
        if not targets and not (_GLOB.search(group) or _GLOB.search(match)):
            raise APIError(404, f"no {group} entry named {match!r}")
        result: dict[str, Any] | None = {} if targets else None
        failure = 0
        if command is not None and targets:
            result, failure = await self._command(targets, command, value)
        content: dict[str, Any] = {"alarm": [], "command": result, "data": {}, "since": since,
                                   "until": time.time()}
        for grp, name, entity in targets:
            content["data"].setdefault(grp, {})[name] = entity.data()
        if failure:
            raise APIError(failure, result["message"], content)  # type: ignore[index]
        return content

    async def _command(self, targets: list[tuple[str, str, _Entity]], command: str,
                       value: str | None) -> tuple[dict[str, Any], int]:
        """The command's result, and the HTTP status of its first failure (0: none failed)."""
        parsed = _COMMAND.match(command)
        known = [t for t in targets if parsed is not None and parsed["name"] in t[2].commands]
        if not known:  # a glob may match entities of several kinds: the command goes to those that know it
            choices = sorted({c for _grp, _name, entity in targets for c in entity.commands})
            message = f"unknown command {command!r} (one of {', '.join(choices)})"
            return {"message": message, "success": False}, 400
        messages, failure = [], 0
        for grp, name, entity in known:
            where = f"{grp}.{name}.{command}"
            try:
                if value is None:
                    messages.append(f"{where}: {entity.get(parsed['name'], parsed['index'])!r}")
                else:
                    converted = await entity.set(parsed["name"], parsed["index"], value)
                    messages.append(f"{where}={value!r} ({converted!r})")
                    log.info("web API: %s=%r", where, converted)
            except APIError as exc:
                failure = failure or exc.status
                messages.append(f"{where}{'' if value is None else f'={value!r}'} failed: {exc.message}")
        return {"message": "; ".join(messages), "success": not failure}, failure
