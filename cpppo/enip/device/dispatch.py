"""The Message Router of a simulated controller: turns one CIP request (bytes) into its reply
(bytes).  Handles Unconnected Send (with route-path checking), Multiple Service Packet,
Forward Open / Large Forward Open / Forward Close, and hands everything else (tag services,
Read Modify Write Tag, tag browsing, attributes) to ``services``.

Transport-independent: the server calls ``Dispatcher.unconnected(message, session)`` for
SendRRData and ``Dispatcher.connected(connection_id, message, session)`` for SendUnitData.
"""

from __future__ import annotations

import collections
import itertools
import logging
import random
from dataclasses import dataclass, field

from cpppo.enip.codec import CodecError, cip, epath, logix
from cpppo.enip.codec.cip import Reply, Service, ServiceError, Status
from cpppo.enip.codec.epath import Logical, Port, Segment, Symbolic
from cpppo.enip.device import services, udt
from cpppo.enip.device.model import Device
from cpppo.enip.device.objects import STRING_TEMPLATE
from cpppo.server.hosting import RateLimitedLog

__all__ = ["MAX_ROUTE_HOPS", "UNCONNECTED_LIMIT", "Connection", "Dispatcher", "Session"]

log = logging.getLogger(__name__)
limited = RateLimitedLog(log)

UNCONNECTED_LIMIT = 504  # bytes of CIP reply an unconnected (UCMM) message may carry
# Hops an unconnected request may take: each Unconnected Send counts its route's port
# segments (at least one).  A longer route (or Unconnected Sends nested deeper) is refused
# as a controller refuses a path it cannot follow: 0x01 with extended status 0x0315.
MAX_ROUTE_HOPS = 8
_CM = (6, 1)
_MR = (2, 1)


@dataclass
class Connection:
    """One connection opened by Forward Open on a session."""

    o_t: int  # the id the client sends on (we chose it)
    t_o: int  # the id we reply on (the client chose it)
    triad: tuple[int, int, int]  # connection serial, vendor, originator serial
    size: int  # T->O connection size in bytes


@dataclass
class Session:
    """Per-TCP-session state the dispatcher needs: its open connections."""

    connections: dict[int, Connection] = field(default_factory=dict)
    max_connections: int = 32
    peer: str = ""  # the client's IP address (Class 0/1 Forward Opens send T->O data there)
    items: tuple = ()  # the request's other CPF items (Sockaddr Info), set by the transport
    reply_items: list = field(default_factory=list)  # CPF items to add to the reply


class Dispatcher:
    """Routes requests to a Device's objects and tags."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._paths: dict[bytes, tuple[Segment, ...]] = {}
        self._sends: dict[bytes, cip.UnconnectedSend] = {}  # Unconnected Send data -> decoded
        self._targets: dict[bytes, services.Target] = {}
        self._generation = -1
        self._ids = itertools.count(random.randrange(1 << 16, 1 << 30))
        self.io = None  # a device.connections.ConnectionManager: Class 0/1 Forward Open/Close
        self.served: collections.Counter[int] = collections.Counter()  # CIP service -> requests
        self.failed: collections.Counter[int] = collections.Counter()  # CIP service -> error replies

    # --- entry points -----------------------------------------------------------------------------

    def unconnected(self, message: bytes, session: Session) -> bytes:
        """The reply to a SendRRData CIP message (Unconnected Send wrapped or direct)."""
        return self.route(message, UNCONNECTED_LIMIT, session)

    def connected(self, connection: Connection, message: bytes, session: Session) -> bytes:
        return self.route(message, connection.size - 2, session, connected=True)

    # --- routing ----------------------------------------------------------------------------------

    def _path(self, raw: bytes) -> tuple[Segment, ...]:
        path = self._paths.get(raw)
        if path is None:
            path = epath.decode(raw)
            if len(self._paths) < 4096:
                self._paths[raw] = path
        return path

    def route(self, message: bytes, limit: int, session: Session, connected: bool = False,
              hops: int = 0) -> bytes:
        """Process one request that has come ``hops`` hops; always returns reply bytes (errors
        become error replies, never exceptions or tracebacks).  Counts it in ``served`` (and
        ``failed`` for a reply with a general status other than success or partial transfer)
        by its service code."""
        reply = self._route(message, limit, session, connected, hops)
        service = message[0] & 0x7F if message else 0
        self.served[service] += 1
        if len(reply) > 2 and reply[2] not in (0, 6):  # 6: partial transfer, more to come
            self.failed[service] += 1
        return reply

    def _route(self, message: bytes, limit: int, session: Session, connected: bool, hops: int) -> bytes:
        try:
            service, raw_path, data = cip.split_request(message)
        except CodecError as exc:
            limited.log(logging.INFO, "malformed CIP request: %s", exc)
            service = message[0] & 0x7F if message else 0
            return Reply(service, Status.PATH_SEGMENT_ERROR if len(message) >= 2 else Status.NOT_ENOUGH_DATA
                         ).encode()
        try:
            if service in (Service.READ_TAG, Service.WRITE_TAG):
                fast = self._tag_service(service, raw_path, data, limit)
                if fast is not None:
                    return fast
            try:
                path = self._path(raw_path)
            except CodecError as exc:
                raise ServiceError(Status.PATH_SEGMENT_ERROR, (), str(exc)) from None
            return self._dispatch(service, path, data, limit, session, connected, hops)
        except ServiceError as exc:
            log.debug("service 0x%02x failed: %s", service, exc.reason)
            return Reply(service, exc.status, exc.ext_status).encode()
        except CodecError as exc:
            log.debug("service 0x%02x has bad data: %s", service, exc)
            return Reply(service, Status.INVALID_PARAMETER).encode()
        except Exception as exc:  # a user Attribute raised: report it in one line, keep serving
            limited.log(logging.WARNING, "service 0x%02x failed unexpectedly: %s", service,
                        RateLimitedLog.text(exc))
            return Reply(service, Status.GENERAL_ERROR).encode()

    def _target(self, raw_path: bytes) -> services.Target:
        generation = len(self.device.symbols)
        if generation != self._generation:
            self._targets.clear()
            self._generation = generation
        target = self._targets.get(raw_path)
        if target is None:
            try:
                path = self._path(raw_path)
            except CodecError as exc:
                raise ServiceError(Status.PATH_SEGMENT_ERROR, (), str(exc)) from None
            target = services.resolve(self.device, path)
            if len(self._targets) < 4096:
                self._targets[raw_path] = target
        return target

    def _tag_service(self, service: int, raw_path: bytes, data: bytes, limit: int) -> bytes | None:
        """Read/Write Tag on a tag or attribute; None if the path names something else."""
        if raw_path[:1] == b"\x20" and raw_path[1:2] in (b"\x6c", b"\x06", b"\x02"):
            return None  # template reads and the like go through _dispatch
        target = self._target(raw_path)
        if service == Service.READ_TAG:
            status, reply = services.read_tag(target, logix.ReadTag.decode(data).elements, limit - 4)
            return Reply(service, status, (), reply).encode()
        services.write_tag(target, logix.WriteTag.decode(data))
        return Reply(service).encode()

    def _dispatch(self, service: int, path: tuple[Segment, ...], data: bytes, limit: int,
                  session: Session, connected: bool, hops: int = 0) -> bytes:
        where = _class_instance(path)
        if where == _CM:
            if service == Service.UNCONNECTED_SEND and not connected:
                return self._unconnected_send(data, session, hops)
            if service in (Service.FORWARD_OPEN, Service.LARGE_FORWARD_OPEN):
                return self._forward_open(service, data, session)
            if service == Service.FORWARD_CLOSE:
                return self._forward_close(data, session)
        if where == _MR and service == Service.MULTIPLE_SERVICE_PACKET:
            return self._multiple(data, limit, session, connected, hops)
        room = limit - 4
        if service == Service.GET_INSTANCE_ATTRIBUTE_LIST:
            scope = _symbol_scope(path)
            if scope is not None:
                status, reply = services.get_instance_attribute_list(self.device, scope[1], data, room,
                                                                     program=scope[0])
                return Reply(service, status, (), reply).encode()
        if where is not None and where[0] == logix.TEMPLATE_CLASS and service == Service.READ_TAG:
            if (where[0], where[1]) not in self.device.objects:
                raise ServiceError(Status.PATH_DESTINATION_UNKNOWN)
            template = udt.template_bytes(self.device, where[1]) or STRING_TEMPLATE
            status, reply = services.read_template(data, room, template)
            return Reply(service, status, (), reply).encode()
        if service in (Service.READ_TAG, Service.READ_TAG_FRAGMENTED):
            target = services.resolve(self.device, path)
            if service == Service.READ_TAG:
                status, reply = services.read_tag(target, logix.ReadTag.decode(data).elements, room)
            else:
                request = logix.ReadTagFragmented.decode(data)
                status, reply = services.read_tag(target, request.elements, room, request.offset)
            return Reply(service, status, (), reply).encode()
        if service in (Service.WRITE_TAG, Service.WRITE_TAG_FRAGMENTED):
            target = services.resolve(self.device, path)
            kind = logix.WriteTag if service == Service.WRITE_TAG else logix.WriteTagFragmented
            decoded = kind.decode(data)
            services.write_tag(target, decoded)
            return Reply(service).encode()
        if service == Service.READ_MODIFY_WRITE_TAG:
            services.read_modify_write_tag(services.resolve(self.device, path), data)
            return Reply(service).encode()
        if service == Service.GET_ATTRIBUTE_SINGLE:
            return Reply(service, 0, (), services.get_attribute_single(self.device, path)).encode()
        if service == Service.SET_ATTRIBUTE_SINGLE:
            services.set_attribute_single(self.device, path, data)
            return Reply(service).encode()
        if service == Service.GET_ATTRIBUTES_ALL:
            return Reply(service, 0, (), services.get_attributes_all(self.device, path)).encode()
        if service == Service.GET_ATTRIBUTE_LIST:
            return Reply(service, 0, (), services.get_attribute_list(self.device, path, data)).encode()
        raise ServiceError(Status.SERVICE_NOT_SUPPORTED, (), f"service 0x{service:02x} not supported here")

    # --- Connection Manager and Message Router services -------------------------------------------

    def _check_route(self, ports: tuple[Segment, ...]) -> None:
        expected = self.device.route_path
        if expected is None:
            return
        wanted = () if expected is False else tuple(expected)  # type: ignore[arg-type]
        if ports == wanted:
            return
        if len(ports) != len(wanted) or any(
                not isinstance(p, Port) or p.port != w.port for p, w in zip(ports, wanted, strict=True)):
            raise ServiceError(Status.CONNECTION_FAILURE, (Status.EXT_INVALID_PORT,), "route port mismatch")
        raise ServiceError(Status.CONNECTION_FAILURE, (Status.EXT_INVALID_LINK,), "route link mismatch")

    def _unconnected_send(self, data: bytes, session: Session, hops: int) -> bytes:
        send = self._sends.get(data)  # a client sends the same ones again and again (its polls)
        if send is None:
            try:
                send = cip.UnconnectedSend.decode(data)
            except CodecError as exc:
                raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
            if len(self._sends) < 4096:
                self._sends[data] = send
        hops += max(1, sum(isinstance(segment, Port) for segment in send.route_path))
        if hops > MAX_ROUTE_HOPS:
            raise ServiceError(Status.CONNECTION_FAILURE, (Status.EXT_INVALID_SEGMENT,),
                               f"route of more than {MAX_ROUTE_HOPS} hops")
        self._check_route(send.route_path)
        if not send.message:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), "empty Unconnected Send message")
        return self.route(send.message, UNCONNECTED_LIMIT, session, hops=hops)

    def _multiple(self, data: bytes, limit: int, session: Session, connected: bool, hops: int) -> bytes:
        try:
            requests = cip.decode_multiple(data)
        except CodecError as exc:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
        replies, used, failed = [], 4 + 2 + 2 * len(requests), False
        for request in requests:
            if request[:1] == bytes((Service.MULTIPLE_SERVICE_PACKET,)):
                reply = Reply(request[0], Status.SERVICE_NOT_SUPPORTED).encode()
            else:
                reply = self.route(request, max(limit - used, 16), session, connected, hops)
            failed = failed or reply[2] not in (0, Status.PARTIAL_TRANSFER)
            used += len(reply)
            replies.append(reply)
        status = Status.EMBEDDED_SERVICE_ERROR if failed else Status.SUCCESS
        return Reply(Service.MULTIPLE_SERVICE_PACKET, status, (), cip.encode_multiple(replies)).encode()

    def _forward_open(self, service: int, data: bytes, session: Session) -> bytes:
        large = service == Service.LARGE_FORWARD_OPEN
        try:
            request = cip.ForwardOpen.decode(data, large)
        except CodecError as exc:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
        triad = (request.serial, request.vendor, request.originator_serial)
        failure = cip.ForwardOpenFailure(*triad).encode()
        ports = tuple(seg for seg in request.path if isinstance(seg, Port))
        try:
            self._check_route(ports)
        except ServiceError as exc:
            return Reply(service, exc.status, exc.ext_status, failure).encode()
        if request.transport & 0x0F in (0, 1):  # implicit I/O: for an adapter (with assemblies) only
            if self.io is None:
                return Reply(service, Status.CONNECTION_FAILURE, (0x0103,), failure).encode()
            reply, items = self.io.forward_open(service, request, session.peer, session.items)
            session.reply_items.extend(items)
            return reply
        refused = None
        if any(c.triad == triad for c in session.connections.values()):
            refused = Status.EXT_DUPLICATE_FORWARD_OPEN
        elif len(session.connections) >= session.max_connections:
            refused = Status.EXT_TOO_MANY_CONNECTIONS
        if refused is not None:
            return Reply(service, Status.CONNECTION_FAILURE, (refused,), failure).encode()
        size = request.t_o_params & (0xFFFF if large else 0x01FF)
        o_t = next(self._ids) & 0xFFFFFFFF
        session.connections[o_t] = Connection(o_t, request.t_o_connection, triad, max(size, 64))
        reply = cip.ForwardOpenReply(o_t, request.t_o_connection, *triad, request.o_t_rpi, request.t_o_rpi)
        return Reply(service, 0, (), reply.encode()).encode()

    def _forward_close(self, data: bytes, session: Session) -> bytes:
        try:
            request = cip.ForwardClose.decode(data)
        except CodecError as exc:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
        triad = (request.serial, request.vendor, request.originator_serial)
        for o_t, connection in list(session.connections.items()):
            if connection.triad == triad:
                del session.connections[o_t]
                return Reply(Service.FORWARD_CLOSE, 0, (), cip.ForwardCloseReply(*triad).encode()).encode()
        closed = self.io.forward_close(request) if self.io is not None else None
        if closed is not None:
            return closed
        failure = cip.ForwardOpenFailure(*triad).encode()
        return Reply(Service.FORWARD_CLOSE, Status.CONNECTION_FAILURE, (Status.EXT_CONNECTION_NOT_FOUND,),
                     failure).encode()


def _class_instance(path: tuple[Segment, ...]) -> tuple[int, int] | None:
    """(class, instance) if the path starts with them, else None."""
    if len(path) >= 2 and isinstance(path[0], Logical) and isinstance(path[1], Logical) \
            and path[0].kind == "class" and path[1].kind == "instance":
        return path[0].value, path[1].value
    return None


def _symbol_scope(path: tuple[Segment, ...]) -> tuple[str | None, int] | None:
    """(program or None, first instance) for a tag browse path: ``@0x6B/<instance>`` or
    ``Program:<name>`` then ``@0x6B/<instance>``; None for any other path."""
    program = None
    if path and isinstance(path[0], Symbolic):
        program, path = path[0].name, path[1:]
    where = _class_instance(path)
    if where is None or where[0] != logix.SYMBOL_CLASS or len(path) != 2:
        return None
    return program, where[1]
