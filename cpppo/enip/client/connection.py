"""``client.client``: a blocking TCP or UDP EtherNet/IP connection that sends requests and
hands back replies (``next(conn)``) as dotted records.

Every blocking call takes a timeout; the connection's own ``timeout`` is the default.  A
reply is returned by ``next(conn)`` as soon as one whole frame has arrived (None if none is
ready yet); at end of stream (TCP) iteration stops.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Sequence
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.enip.client import wire
from cpppo.enip.client.operations import parse_operation, parse_path
from cpppo.enip.client.wire import reply_record
from cpppo.enip.codec import cpf, encapsulation
from cpppo.enip.codec.cip import Service
from cpppo.enip.codec.encapsulation import Command

__all__ = ["await_response", "client", "parse_address", "reply_record"]

log = logging.getLogger("enip.cli")

DEFAULT_PORT = 44818
MAX_FRAME = 65535 + 24
def parse_address(text: str | tuple[str, int] | None, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """'host', 'host:port', ':port' or (host, port) to (host, port); '' means localhost."""
    if isinstance(text, tuple):
        return text[0] or "localhost", int(text[1] or default_port)
    host, _, port = (text or "").rpartition(":") if ":" in (text or "") else (text or "", "", "")
    if ":" in host:
        raise ValueError(f"bad address {text!r}: expected <host>[:<port>]")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad address {text!r}: the port must be a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad address {text!r}: the port must be 0-65535")
    return host or "localhost", number


def context_bytes(context: Any) -> bytes:
    if isinstance(context, int):
        return encapsulation.sender_context(context)
    raw = context.encode() if isinstance(context, str) else bytes(context or b"")
    return raw[:8].ljust(8, b"\0")


class client:  # noqa: N801 - the spec's public name
    """A TCP (or UDP, optionally broadcast) EtherNet/IP connection; see the module docstring.

    Keywords: ``host``, ``port`` (44818), ``timeout`` (connect and default I/O timeout),
    ``dialect`` (kept for compatibility: the Logix services are always available), ``udp``,
    ``broadcast`` (UDP without connecting: replies may come from many peers),
    ``source_address`` ("1.2.3.4[:port]" to bind to), ``profiler`` (disabled around I/O)."""

    route_path_default: list[dict[str, Any]] | None = [{"port": 1, "link": 0}]
    send_path_default: str = "@6/1"

    def __init__(self, host: str | None = "localhost", port: int | None = None, timeout: float | None = None,
                 dialect: Any = None, profiler: Any = None, udp: bool = False, broadcast: bool = False,
                 source_address: str | tuple[str, int] | None = None, **kwds: Any) -> None:
        self.addr = parse_address((host or "localhost", port or DEFAULT_PORT))
        self.timeout = timeout
        self.dialect = dialect
        self.profiler = profiler
        self.udp, self.broadcast = udp, broadcast
        self.session = 0
        self._context = 0
        self.requests_sent = 0      # CIP requests issued by the pipeline (for thruput reports)
        self.string_type: int | None = None  # how the device took a STRING write: 0x02A0 or 0xD0
        self._buf = bytearray()
        self._eof = False
        self._datagrams: list[tuple[bytes, Any]] = []
        self.socket: socket.socket | None = None
        source = parse_address(source_address, 0) if source_address else None
        if source and source[0] == "localhost" and not str(source_address).startswith("localhost"):
            source = ("0.0.0.0", source[1])
        try:
            if udp:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                if broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                if source:
                    sock.bind(source)
                if not broadcast:
                    sock.connect(self.addr)
            else:
                sock = socket.create_connection(self.addr, timeout=timeout, source_address=source)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            raise wire.ENIPTimeout(f"Connect to {self.addr[0]}:{self.addr[1]} timed out after {timeout}s") \
                from None
        except OSError as exc:
            raise wire.ENIPConnectionError(str(exc)) from exc
        sock.setblocking(False)
        self.socket = sock

    def __str__(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self} session {self.session}>"

    # --- life cycle -------------------------------------------------------------------
    def shutdown(self) -> None:
        if self.socket is not None and not self.udp:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def __enter__(self) -> client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        sock = getattr(self, "socket", None)
        if sock is not None:
            sock.close()

    # --- raw I/O ----------------------------------------------------------------------
    def _sock(self) -> socket.socket:
        if self.socket is None:
            raise wire.ENIPConnectionError("connection is closed")
        return self.socket

    def writable(self, timeout: float | None = None) -> bool:
        _, w, _ = select.select([], [self._sock()], [], timeout)
        return bool(w)

    def readable(self, timeout: float | None = None) -> bool:
        """True if a reply (or end of stream) is ready now or arrives within ``timeout``."""
        if self._complete() or self._eof or self._datagrams:
            return True
        r, _, _ = select.select([self._sock()], [], [], timeout)
        return bool(r)

    def send(self, request: bytes, timeout: float | None = None,
             address: tuple[str, int] | None = None) -> None:
        """Send one whole frame (to ``address`` for broadcast UDP; else to the peer)."""
        sock = self._sock()
        if self.udp:
            if self.broadcast:
                sock.sendto(request, address or self.addr)
            else:
                sock.send(request)
            return
        view = memoryview(request)
        deadline = None
        while True:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise wire.ENIPConnectionError(str(exc)) from exc
            if sent == len(view):
                return  # the usual case: all of it at once
            view = view[sent:]
            if deadline is None and timeout is not None:
                deadline = time.monotonic() + timeout
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.writable(left):
                raise wire.ENIPTimeout(f"Timed out sending to {self}")

    def _complete(self) -> bool:
        if len(self._buf) < encapsulation.HEADER_SIZE:
            return False
        return len(self._buf) >= encapsulation.HEADER_SIZE + encapsulation.peek_length(self._buf)

    def _receive(self) -> None:
        """Take whatever bytes are waiting (non-blocking)."""
        sock = self._sock()
        try:
            if self.udp:
                data, peer = sock.recvfrom(MAX_FRAME)
                self._datagrams.append((data, peer))
                return
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if self.udp:
                return  # e.g. ICMP port unreachable: no reply from that peer
            raise wire.ENIPConnectionError(str(exc)) from exc
        if not data:
            self._eof = True
        self._buf += data

    def frame(self, timeout: float | None = None) -> tuple[encapsulation.Header, bytes, Any] | None:
        """The next whole frame as (header, payload, peer), waiting up to ``timeout``;
        None on timeout; raises ENIPConnectionError at end of stream."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._datagrams:
                data, peer = self._datagrams.pop(0)
                used, header, payload = encapsulation.decode(data)
                if used:
                    return header, payload, peer
                continue
            if self._complete():
                used, header, payload = encapsulation.decode(self._buf)
                del self._buf[:used]
                return header, payload, self.addr
            if self._eof:
                raise wire.ENIPConnectionError("Communication ceased: the connection was closed by the peer")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if self.profiler:
                self.profiler.disable()
            try:
                ready, _, _ = select.select([self._sock()], [], [], left)
            finally:
                if self.profiler:
                    self.profiler.enable()
            if ready:
                self._receive()

    def __iter__(self) -> client:
        return self

    def __next__(self) -> dotdict | None:
        """The next reply if one is ready (None if not); StopIteration at end of stream."""
        if not (self._complete() or self._datagrams) and not self._eof:
            r, _, _ = select.select([self._sock()], [], [], 0)
            if r:
                self._receive()
        try:
            got = self.frame(timeout=0)
        except wire.ENIPConnectionError:
            raise StopIteration from None
        if got is None:
            return None
        return self.decode_reply(*got)

    def decode_reply(self, header: encapsulation.Header, payload: bytes, peer: Any) -> dotdict:
        if header.command in (Command.SEND_RR_DATA,):
            reply = wire.header_dotdict(header, peer)
            if header.status or not payload:
                return reply
            rr = cpf.decode_rr_data(payload)
            item = dotdict(type_id=cpf.UNCONNECTED_DATA, length=len(rr.data))
            item["unconnected_send.request"] = reply_record(rr.data)
            reply["enip.CIP.send_data"] = dotdict(
                interface=rr.interface, timeout=rr.timeout,
                CPF=dotdict(count=2, item=[dotdict(type_id=0, length=0), item]))
            return reply
        if header.command == Command.REGISTER_SESSION:
            reply = wire.header_dotdict(header, peer)
            if not header.status and len(payload) == 4:
                version, options = encapsulation.decode_register_session(payload)
                reply["enip.CIP.register"] = dotdict(protocol_version=version, options=options)
            return reply
        return wire.list_reply(header, payload, peer)

    # --- requests ---------------------------------------------------------------------
    def next_context(self) -> int:
        """A fresh sender context number for the next request."""
        self._context += 1
        return self._context

    def _encap(self, command: int, payload: bytes = b"", sender_context: Any = b"",
               address: tuple[str, int] | None = None, timeout: float | None = None) -> bytes:
        data = wire.frame(command, payload, self.session, context_bytes(sender_context))
        self.send(data, timeout=timeout, address=address)
        return data

    def register(self, timeout: float | None = None, sender_context: Any = b"") -> bytes:
        return self._encap(Command.REGISTER_SESSION, encapsulation.register_session_data(), sender_context,
                           timeout=timeout)

    def list_identity(self, timeout: float | None = None, sender_context: Any = b"",
                      address: tuple[str, int] | None = None) -> bytes:
        return self._encap(Command.LIST_IDENTITY, b"", sender_context, address, timeout)

    def list_services(self, timeout: float | None = None, sender_context: Any = b"",
                      address: tuple[str, int] | None = None) -> bytes:
        return self._encap(Command.LIST_SERVICES, b"", sender_context, address, timeout)

    def list_interfaces(self, timeout: float | None = None, sender_context: Any = b"",
                        address: tuple[str, int] | None = None) -> bytes:
        return self._encap(Command.LIST_INTERFACES, b"", sender_context, address, timeout)

    def legacy(self, command: int, timeout: float | None = None, sender_context: Any = b"",
               address: tuple[str, int] | None = None) -> bytes:
        return self._encap(command, b"", sender_context, address, timeout)

    def paths(self, route_path: Any = None, send_path: Any = None) -> tuple[Any, Any]:
        """The effective (route_path, send_path) as path dicts; send_path [] means no
        Unconnected Send (a simple device)."""
        if send_path is None:
            send_path = self.send_path_default
        if isinstance(send_path, str):
            send_path = parse_path(send_path) if send_path.strip() else []
        if route_path is None:
            route_path = self.route_path_default
        return (route_path or None), send_path

    def cip_send(self, cip: bytes, route_path: Any = None, send_path: Any = None,
                 timeout: float | None = None,
                 sender_context: Any = b"", send: bool = True) -> bytes:
        """Frame a CIP request (in an Unconnected Send unless send_path is empty) and send it."""
        route, path = self.paths(route_path, send_path)
        message = wire.unconnected_send(cip, route, path) if path else cip
        data = wire.frame(Command.SEND_RR_DATA, wire.rr_data(message), self.session,
                          context_bytes(sender_context))
        if send:
            self.send(data, timeout=timeout)
        return data

    def _service(self, service: int, path: Any, method: str, elements: int = 1, route_path: Any = None,
                 send_path: Any = None, timeout: float | None = None, send: bool = True,
                 sender_context: Any = b"", build: Any = None, **extra: Any) -> dotdict:
        """Send one request: ``build(path)`` makes the CIP request of the parsed path."""
        if isinstance(path, str):
            path = parse_operation(path)["path"] if not path.startswith("@") else parse_path(path)
        cip = build(path) if build else wire.cip_request(service, path)
        frame = self.cip_send(cip, route_path, send_path, timeout, sender_context, send)
        return dotdict(method=method, path=path, elements=elements, service=service, input=cip,
                       frame=frame, **extra)

    def read(self, path: Any, elements: int = 1, offset: int = 0, **kwds: Any) -> dotdict:
        """Read Tag (or Read Tag Fragmented with an ``offset`` or ``fragment=True``)."""
        frag = kwds.pop("fragment", False) or offset
        if isinstance(path, str) and not path.startswith("@"):
            op = parse_operation(path)
            path, elements = op["path"], kwds.pop("elements", None) or op["elements"]
        service = Service.READ_TAG_FRAGMENTED if frag else Service.READ_TAG
        return self._service(service, path, "read", elements, offset=offset,
                             build=lambda segs: wire.read_request(segs, elements, offset if frag else None),
                             **kwds)

    def write(self, path: Any, data: Sequence[Any], elements: int | None = None, offset: int = 0,
              tag_type: int | None = None, **kwds: Any) -> dotdict:
        """Write Tag (or Write Tag Fragmented with an ``offset`` or ``fragment=True``).

        ``tag_type`` 0x02A0 writes text as Logix STRING structures; 0xD0 as CIP STRINGs."""
        frag = kwds.pop("fragment", False) or offset
        if tag_type is None:
            tag_type = wire.default_type(data)
        count = len(data) if elements is None else elements
        raw = wire.encode_tag_values(tag_type, data)
        service = Service.WRITE_TAG_FRAGMENTED if frag else Service.WRITE_TAG
        return self._service(service, path, "write", count, offset=offset, tag_type=tag_type, data=list(data),
                             build=lambda segs: wire.write_request(segs, tag_type, count, raw,
                                                                   offset if frag else None), **kwds)

    def get_attributes_all(self, path: Any, **kwds: Any) -> dotdict:
        return self._service(Service.GET_ATTRIBUTES_ALL, path, "get_attributes_all", **kwds)

    def get_attribute_single(self, path: Any, **kwds: Any) -> dotdict:
        return self._service(Service.GET_ATTRIBUTE_SINGLE, path, "get_attribute_single", **kwds)

    def set_attribute_single(self, path: Any, data: Sequence[Any], elements: int = 1,
                             tag_type: int | None = None, **kwds: Any) -> dotdict:
        """Set Attribute Single; ``data`` are USINTs unless a ``tag_type`` converts them."""
        raw = wire.encode_values(tag_type, data) if tag_type else bytes(int(v) & 0xFF for v in data)
        return self._service(Service.SET_ATTRIBUTE_SINGLE, path, "set_attribute_single", elements,
                             data=list(data), tag_type=tag_type,
                             build=lambda segs: wire.cip_request(Service.SET_ATTRIBUTE_SINGLE, segs, raw),
                             **kwds)


def await_response(cli: client, timeout: float | None = None) -> tuple[dotdict | None, float]:
    """Wait up to ``timeout`` for one reply: (reply, elapsed); reply is None on timeout and
    {} at end of stream."""
    start = time.monotonic()
    try:
        got = cli.frame(timeout=timeout)
    except wire.ENIPConnectionError:
        return dotdict(), time.monotonic() - start
    if got is None:
        return None, time.monotonic() - start
    return cli.decode_reply(*got), time.monotonic() - start
