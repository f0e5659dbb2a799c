"""The EtherNet/IP CIP client (spec 2.1.4-2.1.5): ``client``, ``connector``,
``parse_operations``, ``await_response`` and the ``enip_client`` command.

    with client.connector(host="localhost", port=44818, timeout=1.0) as conn:
        ops = client.parse_operations(["Tag[0-9]+16=(DINT)4,5,6,7,8,9", "@0x2/1/1", "Tag[3-5]"])
        failures, transactions = conn.process(operations=ops, depth=1, multiple=0, timeout=1.0)

``connector`` registers a session on connect; ``.pipeline`` / ``.synchronous`` / ``.operate``
yield ``(idx, dsc, req, rpy, sts, val)`` 6-tuples; ``.results`` yields values (None for a
failed operation) and ``.process`` returns ``(failures, [value, ...])``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.enip.client import wire
from cpppo.enip.client.connection import await_response, client, parse_address
from cpppo.enip.client.engine import Engine, Result
from cpppo.enip.client.operations import (
    OperationError,
    format_path,
    parse_int,
    parse_operations,
    parse_path,
    parse_route_path,
)
from cpppo.enip.client.wire import (
    ENIPConnectionError,
    ENIPError,
    ENIPStatusError,
    ENIPTimeout,
    rr_frame,
    rr_message,
    status_text,
)
from cpppo.enip.codec.encapsulation import Command

__all__ = [
    "ENIPConnectionError", "ENIPError", "ENIPStatusError", "ENIPTimeout", "OperationError",
    "await_response", "client", "connector", "format_path", "parse_address", "parse_int",
    "parse_operations", "parse_path", "parse_route_path", "recycle",
]

log = logging.getLogger("enip.cli")


class connector(client):  # noqa: N801 - the spec's public name
    """A registered TCP session to a Controller that runs sequences of operations.

    Connecting and registering honour ``timeout``; failure raises ENIPConnectionError
    (refused, dropped) or ENIPTimeout ("Failed to receive any response")."""

    def __init__(self, host: str | None = "localhost", port: int | None = None, timeout: float | None = None,
                 **kwds: Any) -> None:
        super().__init__(host=host, port=port, timeout=timeout, **kwds)
        if self.udp:
            return
        try:
            self.register(timeout=timeout)
            reply, _ = await_response(self, timeout=timeout)
            if reply is None:
                raise ENIPTimeout("Failed to receive any response")
            if not reply:
                raise ENIPConnectionError("Communication ceased before Register Session completed")
            if reply.enip.status:
                raise ENIPStatusError(f"Register Session failed with status 0x{reply.enip.status:02x}",
                                      reply.enip.status)
            self.session = reply.enip.session_handle
        except BaseException:
            self.close()
            raise
        log.info("Connect:  Success to %s, session %d", self, self.session)

    # --- running operations -------------------------------------------------------------
    def synchronous(self, operations: Iterable[Any], index: int = 0, fragment: bool = False,
                    multiple: int = 0, timeout: float | None = None, **kwds: Any) -> Iterator[Result]:
        """One request at a time: each reply is yielded before the next request is sent."""
        return self.pipeline(operations, index=index, fragment=fragment, multiple=multiple, timeout=timeout,
                             depth=1, **kwds)

    def pipeline(self, operations: Iterable[Any], index: int = 0, fragment: bool = False,
                 multiple: int = 0, timeout: float | None = None, depth: int = 1,
                 route_path: Any = None, send_path: Any = None) -> Iterator[Result]:
        """Up to ``depth`` requests in flight; 6-tuples yielded in operation order (the
        blocking face of :class:`~cpppo.enip.client.engine.Engine`)."""
        route, send = self.paths(route_path, send_path)
        engine = Engine(operations, index=index, fragment=fragment, multiple=multiple, depth=depth,
                        route_path=route, send_path=send, learned=self)
        return self._drive(engine, self.timeout if timeout is None else timeout)

    def _drive(self, engine: Engine, timeout: float | None) -> Iterator[Result]:
        ready, issue, receive, results = engine.ready, engine.issue, engine.receive, engine.results
        send, frame = self.send, self.frame
        while True:
            while ready():
                ctx = self.next_context()
                message = issue(ctx)
                try:
                    send(rr_frame(message, self.session, ctx), timeout)
                except ENIPConnectionError as exc:
                    if engine.sent == 1:
                        raise
                    why = _ceased(engine.received, engine.sent - 1)
                    raise ENIPConnectionError(f"{why} ({exc})") from None
                self.requests_sent += 1
            if not engine.inflight:
                return
            try:
                got = frame(timeout)
            except ENIPConnectionError:
                raise ENIPConnectionError(_ceased(engine.received, engine.sent)) from None
            if got is None:
                raise ENIPTimeout(f"Failed to receive any response within {timeout}s "
                                  f"({engine.inflight} requests outstanding)")
            header, payload, _ = got
            if header.command == Command.SEND_RR_DATA:
                status = header.status
                message = b"" if status else rr_message(payload)
                receive(int.from_bytes(header.context, "little"), message, status)
                yield from results()

    def validate(self, harvested: Iterable[Result], printing: bool = False) -> Iterator[Result]:
        """Log (and with ``printing``, print) each result; a successful write's value becomes
        the data written."""
        for idx, dsc, req, rpy, sts, val in harvested:
            method = req.get("method", "read") if isinstance(req, dict) else "read"
            writing = method in ("write", "set_attribute_single")
            if writing and val is True and "data" in req:
                val = req["data"]
            what = str(req)
            if isinstance(req, dict):
                what = format_path(req.get("path", ""), req.get("elements"))
            line = f"{what:<24} {'<=' if writing else '=='} {val!r}: {status_text(sts)!r}"
            if sts:
                log.warning("Client %s %s returned non-zero status: %s", dsc, what, status_text(sts))
            else:
                log.info("%3d: %s", idx, line)
            if printing:
                print(line, flush=True)
            yield idx, dsc, req, rpy, sts, val

    def operate(self, operations: Iterable[Any], depth: int = 0, printing: bool = False,
                validating: bool = False, **kwds: Any) -> Iterator[Result]:
        """``.pipeline`` if depth > 0, else ``.synchronous``; optionally through ``.validate``."""
        if depth and int(depth) > 0:
            harvested = self.pipeline(operations, depth=depth, **kwds)
        else:
            harvested = self.synchronous(operations, **kwds)
        if validating or printing:
            harvested = self.validate(harvested, printing=printing)
        return harvested

    def results(self, operations: Iterable[Any], **kwds: Any) -> Iterator[Any]:
        """Only the values, as they arrive (None for a failed operation)."""
        for _idx, _dsc, _req, _rpy, _sts, val in self.operate(operations, **kwds):
            yield val

    def process(self, operations: Iterable[Any], **kwds: Any) -> tuple[int, list[Any]]:
        """Run everything; return (number of failed operations, [value, ...])."""
        transactions = list(self.results(operations, **kwds))
        failures = sum(1 for val in transactions if val is None)
        return failures, transactions


def _ceased(received: int, sent: int) -> str:
    return f"Communication ceased before harvesting all pipeline responses: {received:3d}/{sent:3d}"


def recycle(iterable: Sequence[Any], times: int | None = None) -> Iterator[Any]:
    """The items of ``iterable`` ``times`` times over (forever if None)."""
    count = 0
    while times is None or count < times:
        yield from iterable
        count += 1


def identity(conn: client, timeout: float | None = None) -> dotdict | None:
    """Send List Identity on ``conn`` and return the identity record of the reply."""
    conn.list_identity(timeout=timeout)
    reply, _ = await_response(conn, timeout=timeout)
    return wire.identity_record(reply) if reply else None

