"""The Message Router of a simulated controller: turns one CIP request (bytes) into its reply
(bytes).  Handles Unconnected Send (with route-path checking), Multiple Service Packet,
Forward Open / Large Forward Open / Forward Close, and hands everything else (tag services,
Read Modify Write Tag, tag browsing, attributes) to ``services``.

Transport-independent: the server calls ``Dispatcher.unconnected(message, session)`` for
SendRRData and ``Dispatcher.connected(connection_id, message, session)`` for SendUnitData.
"""

from __future__ import annotations

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

__all__ = ["UNCONNECTED_LIMIT", "Connection", "Dispatcher", "Session"]

log = logging.getLogger(__name__)

UNCONNECTED_LIMIT = 504  # bytes of CIP reply an unconnected (UCMM) message may carry
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


class Dispatcher:
    """Routes requests to a Device's objects and tags."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._paths: dict[bytes, tuple[Segment, ...]] = {}
        self._targets: dict[bytes, services.Target] = {}
        self._generation = -1
        self._ids = itertools.count(random.randrange(1 << 16, 1 << 30))

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

    def route(self, message: bytes, limit: int, session: Session, connected: bool = False) -> bytes:
        """Process one request; always returns reply bytes (errors become error replies)."""
        try:
            service, raw_path, data = cip.split_request(message)
        except CodecError as exc:
            log.info("malformed CIP request: %s", exc)
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
            return self._dispatch(service, path, data, limit, session, connected)
        except ServiceError as exc:
            log.debug("service 0x%02x failed: %s", service, exc.reason)
            return Reply(service, exc.status, exc.ext_status).encode()
        except CodecError as exc:
            log.debug("service 0x%02x has bad data: %s", service, exc)
            return Reply(service, Status.INVALID_PARAMETER).encode()
        except Exception:  # a user Attribute raised: report it, keep serving
            log.exception("service 0x%02x failed unexpectedly", service)
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
                  session: Session, connected: bool) -> bytes:
        where = _class_instance(path)
        if where == _CM:
            if service == Service.UNCONNECTED_SEND and not connected:
                return self._unconnected_send(data, session)
            if service in (Service.FORWARD_OPEN, Service.LARGE_FORWARD_OPEN):
                return self._forward_open(service, data, session)
            if service == Service.FORWARD_CLOSE:
                return self._forward_close(data, session)
        if where == _MR and service == Service.MULTIPLE_SERVICE_PACKET:
            return self._multiple(data, limit, session, connected)
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

    def _unconnected_send(self, data: bytes, session: Session) -> bytes:
        try:
            send = cip.UnconnectedSend.decode(data)
        except CodecError as exc:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
        self._check_route(send.route_path)
        if not send.message:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), "empty Unconnected Send message")
        return self.route(send.message, UNCONNECTED_LIMIT, session)

    def _multiple(self, data: bytes, limit: int, session: Session, connected: bool) -> bytes:
        try:
            requests = cip.decode_multiple(data)
        except CodecError as exc:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
        replies, used, failed = [], 4 + 2 + 2 * len(requests), False
        for request in requests:
            if request[:1] == bytes((Service.MULTIPLE_SERVICE_PACKET,)):
                reply = Reply(request[0], Status.SERVICE_NOT_SUPPORTED).encode()
            else:
                reply = self.route(request, max(limit - used, 16), session, connected)
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
