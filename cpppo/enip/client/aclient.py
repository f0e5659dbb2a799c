"""An asyncio EtherNet/IP client for callers that poll many devices at once.

    async with AsyncClient("127.0.0.2", 44818, timeout=2.0) as c:   # connect + Register Session
        ident = await c.list_identity()       # dotdict: product_name, serial_number, vendor_id, ...
        values = await c.read("SCADA[0-9]")   # a list (a scalar for "Tag" or "Tag[3]")
        await c.write("SCADA[0]", [1])
        raw = await c.get_attribute_single("@1/1/7")   # the attribute's bytes, as a list of USINT

It is the asyncio face of the one client engine (``engine.Engine``, sans-IO, over the
codec) that the blocking client drives too.  Requests on one client may overlap (each is
matched to its reply by its sender context); use one client per device and run them
concurrently.  Every call takes ``timeout=`` (default: the client's); a timeout raises
``ENIPTimeout`` (a ``TimeoutError``), an error status ``ENIPStatusError``, a refused or
dropped connection ``ENIPConnectionError`` -- all ``ENIPError``, each with a one-line message.
A timed-out (or cancelled) request leaves the connection open and usable (``connected``): a
late reply is recognised by its sender context and skipped, so a slow device costs no
reconnect; only a reply cut off halfway through its frame closes the connection.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.enip.client import wire
from cpppo.enip.client.engine import Engine, check
from cpppo.enip.client.operations import CIP_TYPES, LOGIX_STRING_TYPE, parse_operation, parse_path
from cpppo.enip.client.wire import ENIPConnectionError, ENIPError, ENIPStatusError, ENIPTimeout
from cpppo.enip.codec import cpf, encapsulation
from cpppo.enip.codec.encapsulation import Command
from cpppo.timing import deadline

__all__ = ["AsyncClient", "ENIPConnectionError", "ENIPError", "ENIPStatusError", "ENIPTimeout"]

_UNSET: Any = object()
_DEFAULT_ROUTE = [{"port": 1, "link": 0}]  # shared by every client: never changed in place
_DEFAULT_SEND = [{"class": 6}, {"instance": 1}]


class _Replies(asyncio.Protocol):
    """The connection's side of :class:`AsyncClient`: frames the replies as they arrive and
    hands each to the request waiting on its sender context (none: a late reply, skipped)."""

    __slots__ = ("buffer", "closed", "lost", "transport", "waiting")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""  # the start of a frame not yet complete (rare: a reply is one segment)
        self.waiting: dict[bytes, asyncio.Future] = {}  # sender context -> its request's future
        self.lost: ENIPError | None = None
        self.closed: asyncio.Future | None = None  # made by close(), done when the socket is

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        try:
            while True:
                consumed, header, payload = encapsulation.decode(buffer)
                if not consumed:
                    break
                buffer = buffer[consumed:]
                future = self.waiting.pop(header.context, None)  # type: ignore[union-attr]
                if future is not None and not future.done():
                    future.set_result((header, payload))
        except wire.CodecError as exc:  # out of step: nothing more on it can be trusted
            self.buffer = b""
            self._fail(ENIPError(f"malformed reply: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        self.buffer = bytes(buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or ENIPConnectionError("connection closed")
        self._fail(self.lost)
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: ENIPError) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)


@functools.lru_cache(maxsize=1024)
def _read_operation(tag: str) -> tuple[dict[str, Any], bool, str]:
    """``read``'s operation for ``tag`` (never changed: a read's operation is only read), whether
    it reads one value, and its name in messages; cached, as a poller reads the same tags again
    and again."""
    op = parse_operation(tag)
    return op, op["elements"] == 1 and not any(c in tag for c in "-*"), f"Read {tag}"


class AsyncClient:
    """One registered EtherNet/IP session over an asyncio connection (see the module docstring).

    ``route_path`` / ``send_path`` as for ``client.connector`` (None: '1/0' via '@6/1');
    ``simple=True`` sends bare requests (no Unconnected Send), for non-routing devices."""

    def __init__(self, host: str, port: int = 44818, timeout: float | None = 2.0, *,
                 route_path: Any = None, send_path: Any = None, simple: bool = False) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.route_path = None if simple else (route_path if route_path is not None else _DEFAULT_ROUTE)
        if simple:
            send_path = ""
        self.send_path = parse_path(send_path) if isinstance(send_path, str) and send_path.strip() else (
            [] if send_path == "" else (send_path or _DEFAULT_SEND))
        self.session = 0
        self._protocol: _Replies | None = None
        self._context = 0
        self.string_type: int | None = None  # how the device took a STRING write: 0x02A0 or 0xD0
        self.identity: dotdict | None = None  # the last List Identity answered on this connection

    def __repr__(self) -> str:
        return f"<AsyncClient {self.host}:{self.port} session {self.session}>"

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _limit(self, timeout: Any) -> float | None:
        return self.timeout if timeout is _UNSET else timeout

    async def connect(self, timeout: Any = _UNSET, identify: bool = False) -> None:
        """Open the TCP connection and register a session; ``identify``: ask List Identity in
        the same segment (kept as ``identity``; a poller's first contact, one round trip
        fewer), ENIPStatusError when there is none."""
        limit = self._limit(timeout)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit):
                _, self._protocol = await loop.create_connection(_Replies, self.host, self.port)
        except TimeoutError:
            raise ENIPTimeout(f"Connect to {self.host}:{self.port} timed out after {limit}s") from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ENIPConnectionError(f"Connect to {self.host}:{self.port} failed: {reason}") from exc
        register = self._request(Command.REGISTER_SESSION, encapsulation.register_session_data())
        listing = self._request(Command.LIST_IDENTITY, b"") if identify else None
        self._protocol.transport.write(register[0] if listing is None else register[0] + listing[0])  # type: ignore[union-attr]
        try:
            header, _ = await self._reply(register, limit, "Register Session")
            if header.status:
                await self.close()
                raise ENIPStatusError(f"Register Session failed with status 0x{header.status:02x}",
                                      header.status)
            self.session = header.session
            if listing is not None:
                self._identify(*await self._reply(listing, limit, "List Identity"))
        except BaseException:  # timed out or cancelled: connected, but not set up
            if listing is not None:
                self._forget(listing)
            self._abort()
            raise

    @property
    def connected(self) -> bool:
        """Whether the connection is open (requests may be sent on it): not closed here, nor
        by the device (its idle timeout, say)."""
        protocol = self._protocol
        return (protocol is not None and protocol.lost is None and protocol.transport is not None
                and not protocol.transport.is_closing())

    def _abort(self) -> None:
        """Drop the connection now (no await: usable while being cancelled)."""
        protocol, self._protocol = self._protocol, None
        self.identity = None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        self.identity = None
        if protocol is None or protocol.transport is None:
            return
        if protocol.lost is None:
            protocol.closed = asyncio.get_running_loop().create_future()
            protocol.transport.close()
            await protocol.closed  # the socket is closed (connection_lost)
        else:
            protocol.transport.close()

    async def _transact(self, command: int, payload: bytes, timeout: float | None,
                        what: str) -> tuple[encapsulation.Header, bytes]:
        """One request and its reply (matched by sender context).  A timed-out or cancelled
        request leaves the connection open unless part of a reply frame is waiting: then the
        stream is out of step and the connection is dropped."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise ENIPConnectionError(f"{what}: not connected to {self.host}:{self.port}")
        if protocol.lost is not None:
            self._protocol = None
            raise ENIPConnectionError(f"{what}: connection closed by {self.host}:{self.port}")
        request = self._request(command, payload)
        protocol.transport.write(request[0])
        return await self._reply(request, timeout, what)

    def _request(self, command: int, payload: bytes) -> tuple[bytes, bytes, asyncio.Future]:
        """A request's frame, sender context and the future its reply will be set on (the
        protocol, connected, knows it)."""
        protocol = self._protocol
        assert protocol is not None
        self._context += 1
        context = encapsulation.sender_context(self._context)
        future = protocol.waiting[context] = asyncio.get_running_loop().create_future()
        return encapsulation.encode(command, payload, session=self.session, context=context), context, future

    def _forget(self, request: tuple[bytes, bytes, asyncio.Future]) -> None:
        """A request sent whose reply nobody will wait for."""
        if self._protocol is not None:
            self._protocol.waiting.pop(request[1], None)
        request[2].cancel()

    async def _reply(self, request: tuple[bytes, bytes, asyncio.Future], timeout: float | None,
                     what: str) -> tuple[encapsulation.Header, bytes]:
        """The reply to a request :meth:`_request` made and that has been written."""
        protocol = self._protocol
        assert protocol is not None
        _, context, future = request
        timer = deadline(future, timeout)
        try:
            return await future
        except TimeoutError:
            if protocol.buffer:
                self._abort()
            raise ENIPTimeout(f"{what}: no response from {self.host}:{self.port} within {timeout}s") from None
        except asyncio.CancelledError:  # the caller's own timeout: the connection stays, if in step
            if protocol.buffer:
                self._abort()
            raise
        except ENIPConnectionError:
            self._protocol = None
            raise ENIPConnectionError(f"{what}: connection closed by {self.host}:{self.port}") from None
        except ENIPError as exc:
            self._protocol = None
            raise ENIPError(f"{what}: {exc}") from None
        finally:
            if timer is not None:
                timer.cancel()
            protocol.waiting.pop(context, None)

    async def _run(self, op: dict[str, Any], timeout: Any, what: str) -> Any:
        """Run one operation through the client engine (the asyncio face): its value, or the
        exception its status means."""
        engine = Engine((op,), route_path=self.route_path, send_path=self.send_path, learned=self,
                        records=False)
        limit = self._limit(timeout)
        key = 0
        while engine.ready():
            key += 1
            message = engine.issue(key)
            header, payload = await self._transact(Command.SEND_RR_DATA, cpf.encode_rr_data(message), limit,
                                                   what)
            try:
                engine.receive(key, b"" if header.status else cpf.rr_message(payload), header.status)
            except wire.CodecError as exc:
                raise ENIPError(f"{what}: malformed reply: {exc}") from None
        return check(engine.results()[0], what)

    # --- services -------------------------------------------------------------------------
    async def list_identity(self, timeout: Any = _UNSET) -> dotdict:
        """The device's identity: product_name, serial_number, vendor_id, product_type,
        product_code, revision (major, minor), status, state (and the raw item fields)."""
        return self._identify(*await self._transact(Command.LIST_IDENTITY, b"", self._limit(timeout),
                                                    "List Identity"))

    def _identify(self, header: encapsulation.Header, payload: bytes) -> dotdict:
        ident = wire.identity_of(header, payload)
        if ident is None:
            raise ENIPStatusError(f"List Identity: no identity in the reply (status 0x{header.status:02x})",
                                  header.status)
        self.identity = ident
        return ident

    async def read(self, tag: str, timeout: Any = _UNSET) -> Any:
        """Read a tag (continuing with Read Tag Fragmented as long as the device says "partial")."""
        op, scalar, what = _read_operation(tag)
        values = await self._run(op, timeout, what)
        return values[0] if scalar and len(values) == 1 else values

    async def write(self, tag: str, values: Any, tag_type: int | str | None = None,
                    timeout: Any = _UNSET) -> None:
        """Write ``values`` (a list, or a scalar) to a tag; ``tag_type`` a code or a name
        (default: STRING for text, REAL if any value is a float, else INT), or a cast in
        ``tag`` itself.  Text goes as Logix STRING structures; a device that refuses them
        (type mismatch) gets it again as CIP STRINGs (0xD0).  Data longer than one request
        takes go as Write Tag Fragmented pieces."""
        op = parse_operation(tag)
        if "=" not in tag:
            seq = list(values) if isinstance(values, (list, tuple)) else [values]
            if isinstance(tag_type, str):  # a name; a tag's STRING is the Logix structure
                logix = tag_type.upper() == "STRING" and "symbolic" in op["path"][0]
                tag_type = LOGIX_STRING_TYPE if logix else CIP_TYPES[tag_type.upper()].code
            op.update(method="write", data=seq, elements=len(seq) if op["elements"] == 1 else op["elements"],
                      tag_type=tag_type or wire.default_type(seq))
        await self._run(op, timeout, f"Write {tag}")

    async def get_attribute_single(self, path: str | list, timeout: Any = _UNSET) -> list[int]:
        """The raw bytes of one attribute ('@class/instance/attribute'), as a list of USINT."""
        segs = parse_path(path) if isinstance(path, str) else path
        return await self._run({"path": segs, "method": "get_attribute_single"}, timeout,
                               f"Get Attribute {path}")

    async def get_attributes_all(self, path: str | list, timeout: Any = _UNSET) -> list[int]:
        segs = parse_path(path) if isinstance(path, str) else path
        return await self._run({"path": segs, "method": "get_attributes_all"}, timeout,
                               f"Get Attributes All {path}")
