"""The one client engine, sans-IO: operations in, CIP requests out, replies in, results out.

Both faces drive it: the blocking ``connector`` (``.pipeline``, ``.synchronous``, ...) and the
asyncio ``AsyncClient``.  A face asks :meth:`Engine.issue` for the next request while
:meth:`Engine.ready` says one may go (when it says not and none is in flight, all is done),
sends it (framed in SendRRData under a key of its choosing, its sender context), hands each
reply to :meth:`Engine.receive`, and takes the
finished operations from :meth:`Engine.results` -- the spec's 6-tuples ``(idx, dsc, req,
rpy, sts, val)``, in the order of the operations.

Operations (dicts from ``parse_operations``) become CIP requests ("parts"): one per read, one
per Get/Set Attribute, one or more per write (data larger than ``max_fragment`` bytes are
split into Write Tag Fragmented pieces, each well within the ~504 bytes a Logix controller
takes unconnected).  Parts are bundled into Multiple Service Packets up to ``multiple`` bytes
(request and estimated reply), and up to ``depth`` requests are kept in flight.  A read whose
reply says "partial transfer" (0x06) is continued with Read Tag Fragmented at the next
offset, so any size of data works.  Every request goes to ``route_path`` through an
Unconnected Send at ``send_path`` (none if ``send_path`` is empty).

Text written to a tag goes as Logix STRING structures (type 0x02A0, as Logix clients send
it).  A device that refuses that type (0xFF/0x2107: its tag is a CIP STRING, as the upstream
simulator keeps them) gets the same text again as CIP STRINGs (0xD0).  Until the connection
has seen a structure write succeed, such a write is a probe: nothing after it is sent before
its reply, so a retry never overtakes a later operation.  What the device took is learned
in the connection's ``string_type`` (the ``learned`` object), so later writes go straight
as CIP STRINGs.

Failures are in each result's ``sts``: the CIP status (``0x05``, or ``(0xFF, (0x2107,))``),
or ``("EtherNet/IP", status)`` for an encapsulation error; :func:`check` maps a result to
the client exceptions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from cpppo.enip.client import wire
from cpppo.enip.client.operations import LOGIX_STRING_TYPE, parse_operation
from cpppo.enip.codec.cip import Reply, Service, Status

__all__ = ["MAX_FRAGMENT", "Engine", "Result", "check"]

MAX_FRAGMENT = 440      # data bytes per Write Tag Fragmented piece
CIP_STRING = wire.CIP_STRING
READS = (Service.READ_TAG, Service.READ_TAG_FRAGMENTED)
_SHORT = {Service.READ_TAG: "Read Tag", Service.READ_TAG_FRAGMENTED: "Read Frag",
          Service.WRITE_TAG: "Write Tag", Service.WRITE_TAG_FRAGMENTED: "Write Frag",
          Service.GET_ATTRIBUTES_ALL: "G_A_A", Service.GET_ATTRIBUTE_SINGLE: "G_A_S",
          Service.SET_ATTRIBUTE_SINGLE: "S_A_S"}
_DSC = {(bundled, service): f"{'Multiple' if bundled else 'Single'} {short}"
        for service, short in _SHORT.items() for bundled in (False, True)}
_METHODS = {"read", "write", "get_attribute_single", "get_attributes_all", "set_attribute_single"}

Result = tuple[int, str, Any, Any, Any, Any]


class _Op:
    """One operation on its way through the engine."""

    __slots__ = ("dsc", "handle", "idx", "last", "last_reply", "op", "outstanding", "raw", "retyped", "sts",
                 "tag_type", "val")

    def __init__(self, idx: int, op: dict[str, Any]) -> None:
        self.idx, self.op = idx, op
        self.dsc = ""
        self.outstanding = 0
        self.raw: list[bytes] = []
        self.tag_type: int | None = None
        self.handle: int | None = None  # the structure handle of a structure read
        self.retyped = False            # a STRING write resent as CIP STRING
        self.sts: Any = 0
        self.val: Any = None
        self.last: bytes = b""
        self.last_reply: Reply | None = None


class _Part:
    """One CIP request of an operation."""

    __slots__ = ("cip", "estimate", "offset", "op", "service", "tag_type")

    def __init__(self, op: _Op, service: int, cip: bytes, estimate: int, offset: int = 0,
                 tag_type: int | None = None) -> None:
        self.op, self.service, self.cip, self.estimate, self.offset = op, service, cip, estimate, offset
        self.tag_type = tag_type  # of a write's data
        op.outstanding += 1


class _Learned:
    """Where the engine keeps what it learns of a device when the face gives it nowhere."""

    string_type: int | None = None


def _parts(op: _Op, fragment: bool, string_type: int | None, max_fragment: int) -> list[_Part]:
    spec = op.op
    method = spec.get("method", "read")
    path = spec["path"]
    elements = int(spec.get("elements", 1))
    if method not in _METHODS:
        raise ValueError(f"unknown operation method {method!r}")
    if method == "read":
        offset = int(spec.get("offset") or 0)
        estimate = 6 + elements * (wire.element_size(spec.get("tag_type")) or 4)
        if fragment or spec.get("fragment") or offset:
            request = wire.read_request(path, elements, offset)
            return [_Part(op, Service.READ_TAG_FRAGMENTED, request, estimate, offset)]
        return [_Part(op, Service.READ_TAG, wire.read_request(path, elements), estimate)]
    if method == "write":
        tag_type = spec.get("tag_type") or 0xC3
        if tag_type == LOGIX_STRING_TYPE and string_type == CIP_STRING:
            tag_type = CIP_STRING  # this device keeps CIP STRINGs (learned on this connection)
        return _write_parts(op, tag_type, fragment, max_fragment)
    if method == "set_attribute_single":
        data = spec.get("data", [])
        tag_type = spec.get("tag_type")
        raw = wire.encode_values(tag_type, data) if tag_type else bytes(int(v) & 0xFF for v in data)
        request = wire.cip_request(Service.SET_ATTRIBUTE_SINGLE, path, raw)
        return [_Part(op, Service.SET_ATTRIBUTE_SINGLE, request, 4)]
    service = Service.GET_ATTRIBUTE_SINGLE if method == "get_attribute_single" else Service.GET_ATTRIBUTES_ALL
    return [_Part(op, service, wire.cip_request(service, path), 4 + 4 * elements)]


def _write_parts(op: _Op, tag_type: int, fragment: bool, max_fragment: int) -> list[_Part]:
    """The Write Tag request, or the Write Tag Fragmented pieces, of a write as ``tag_type``."""
    spec = op.op
    path, elements = spec["path"], int(spec.get("elements", 1))
    raw = wire.encode_tag_values(tag_type, spec["data"])
    offset = int(spec.get("offset") or 0)
    if not (fragment or spec.get("fragment") or offset or len(raw) > max_fragment):
        return [_Part(op, Service.WRITE_TAG, wire.write_request(path, tag_type, elements, raw), 4,
                      tag_type=tag_type)]
    size = wire.element_size(tag_type)
    step = max(size, max_fragment // size * size) if size else max(len(raw), 1)
    return [_Part(op, Service.WRITE_TAG_FRAGMENTED,
                  wire.write_request(path, tag_type, elements, raw[at:at + step], offset + at), 4,
                  offset + at, tag_type) for at in range(0, max(len(raw), 1), step)]


class Engine:
    """The client engine for one run of operations (see the module docstring).

    ``learned``: an object whose ``string_type`` attribute keeps, across runs, how the device
    takes text (the connection); ``records``: build the dotted reply record of each result
    (``rpy``; the asyncio face does without)."""

    def __init__(self, operations: Iterable[Any], *, index: int = 0, fragment: bool = False,
                 multiple: int = 0, depth: int = 1, route_path: Any = None, send_path: Any = None,
                 learned: Any = None, records: bool = True, max_fragment: int = MAX_FRAGMENT) -> None:
        self.depth = max(1, int(depth or 1))
        self.multiple = int(multiple or 0)
        self.fragment, self.records, self.max_fragment = fragment, records, max_fragment
        self.wrap: Callable[[bytes], bytes] | None = (
            wire.unconnected_wrapper(route_path, send_path) if send_path else None)
        self.learned = learned if learned is not None else _Learned()
        self._source = iter(operations)
        self._index = index
        self._queue: deque[_Part] = deque()
        self._pending: deque[_Op] = deque()
        self._inflight: dict[int, tuple[list[_Part], bool]] = {}
        self._exhausted = False
        self._barrier: int | None = None  # the key of an outstanding probe (see the module docstring)
        self.sent = self.received = 0

    # --- state ----------------------------------------------------------------------------
    @property
    def inflight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._inflight)

    def ready(self) -> bool:
        """May a request go now (room in the pipeline, no probe outstanding, work left)?
        When it may not and nothing is in flight, every operation is done (its result may
        still be waiting in results())."""
        return (len(self._inflight) < self.depth and self._barrier is None
                and bool(self._queue or self._pull()))

    # --- requests -------------------------------------------------------------------------
    def _probe(self, part: _Part) -> bool:
        return part.tag_type == LOGIX_STRING_TYPE and self.learned.string_type != LOGIX_STRING_TYPE

    def _pull(self) -> bool:
        """Turn the next operation into parts; False when there are none left."""
        if self._exhausted:
            return False
        for spec in self._source:
            if isinstance(spec, str):
                spec = parse_operation(spec)
            op = _Op(self._index, spec)
            self._index += 1
            self._pending.append(op)
            self._queue.extend(_parts(op, self.fragment, self.learned.string_type, self.max_fragment))
            return True
        self._exhausted = True
        return False

    def _group(self) -> list[_Part]:
        queue = self._queue
        if not queue and not self._pull():
            raise IndexError("no operation is left to issue")
        first = queue.popleft()
        bundle = [first]
        multiple = self.multiple
        if multiple <= 0 or first.op.raw or self._probe(first):  # continuations and probes travel alone
            return bundle
        req, rpy = 4 + len(first.cip), 4 + first.estimate
        while queue or self._pull():
            nxt = queue[0]
            if nxt.op.raw or req + 2 + len(nxt.cip) > multiple or rpy + 2 + nxt.estimate > multiple:
                break
            req, rpy = req + 2 + len(nxt.cip), rpy + 2 + nxt.estimate
            bundle.append(queue.popleft())
            if self._probe(nxt):
                break
        return bundle

    def issue(self, key: int) -> bytes:
        """The next CIP message to send (when ready() says one may go), remembered under ``key``."""
        bundle = self._group()
        bundled = len(bundle) > 1
        cip = wire.multiple_request([p.cip for p in bundle]) if bundled else bundle[0].cip
        for part in bundle:
            if not part.op.dsc:
                part.op.dsc = _DSC[bundled, part.service]
            if self._probe(part):
                self._barrier = key
        self._inflight[key] = (bundle, bundled)
        self.sent += 1
        return self.wrap(cip) if self.wrap else cip

    # --- replies --------------------------------------------------------------------------
    def receive(self, key: int, message: bytes, status: int = 0) -> bool:
        """The reply to the request sent under ``key``: its CIP ``message``, or an
        encapsulation error ``status``.  False if ``key`` is not one of ours (a stray reply).
        Raises CodecError for a malformed reply."""
        entry = self._inflight.pop(key, None)
        if entry is None:
            return False
        self.received += 1
        if key == self._barrier:
            self._barrier = None
        bundle, bundled = entry
        if status:
            for part in bundle:
                part.op.outstanding -= 1
                part.op.sts = part.op.sts or ("EtherNet/IP", status)
            return True
        reply = Reply.decode(message)
        if bundled and reply.status in (0, Status.EMBEDDED_SERVICE_ERROR) \
                and reply.service == Service.MULTIPLE_SERVICE_PACKET:
            pieces = wire.decode_msp(reply.data)
            if len(pieces) != len(bundle):
                raise wire.CodecError(f"Multiple Service Packet reply has {len(pieces)} replies "
                                      f"for {len(bundle)} requests")
            replies = [(Reply.decode(raw), raw) for raw in pieces]
        else:
            replies = [(reply, message)] * len(bundle)
        for part, (rpy, raw) in zip(bundle, replies, strict=True):
            self._fold(part, rpy, raw)
        return True

    def _fold(self, part: _Part, rpy: Reply, raw: bytes) -> None:
        """Fold one part's reply into its operation (continuing reads, retrying text)."""
        op = part.op
        op.outstanding -= 1
        op.last, op.last_reply = raw, rpy
        service, status = part.service, rpy.status
        if service in READS and status in (0, Status.PARTIAL_TRANSFER) and len(rpy.data) >= 2:
            op.tag_type, op.handle, chunk = wire.split_typed(rpy.data)
            op.raw.append(chunk)
            if status == Status.PARTIAL_TRANSFER:
                if not chunk:
                    op.sts = status
                    return
                offset = part.offset + len(chunk)
                elements = int(op.op.get("elements", 1))
                self._queue.appendleft(_Part(op, Service.READ_TAG_FRAGMENTED,
                                             wire.read_request(op.op["path"], elements, offset), 0, offset))
            return
        if part.tag_type == LOGIX_STRING_TYPE and (op.retyped or wire.is_type_mismatch(rpy)):
            if not op.retyped:  # resend the text as CIP STRINGs, in place of what is left
                op.retyped = True
                for stale in [p for p in self._queue if p.op is op]:
                    self._queue.remove(stale)
                    op.outstanding -= 1
                retry = _write_parts(op, CIP_STRING, self.fragment, self.max_fragment)
                self._queue.extendleft(reversed(retry))
            return  # a reply to the structure write, superseded by the retry
        if status:
            if not op.sts:
                op.sts = rpy.sts
            return
        if part.tag_type in (LOGIX_STRING_TYPE, CIP_STRING) and op.op.get("tag_type") == LOGIX_STRING_TYPE:
            self.learned.string_type = part.tag_type  # how this device takes text
        if service in READS:
            return  # values are decoded when the operation completes
        attributes = service in (Service.GET_ATTRIBUTE_SINGLE, Service.GET_ATTRIBUTES_ALL)
        op.val = list(rpy.data) if attributes else True

    # --- results --------------------------------------------------------------------------
    def results(self) -> list[Result]:
        """The operations finished since the last call, in operation order."""
        pending = self._pending
        done = []
        while pending and pending[0].outstanding == 0:
            done.append(self._finish(pending.popleft()))
        return done

    def _finish(self, op: _Op) -> Result:
        rpy = wire.reply_record(op.last, op.last_reply) if op.last and self.records else None
        if op.sts:
            op.val = None
        elif op.tag_type is not None:
            layer = None
            if rpy is not None and len(op.raw) == 1:
                layer = dict.get(rpy, "read_tag") or dict.get(rpy, "read_frag")
            data = dict.get(layer, "data") if isinstance(layer, dict) else None
            if data is None:  # else decoded already for the reply record
                data = wire.decode_values(op.tag_type, b"".join(op.raw), op.handle)
            op.val = data
        return op.idx, op.dsc, op.op, rpy, op.sts, op.val


def check(result: Result, what: str) -> Any:
    """A result's value, or the client exception its status means (one line naming ``what``)."""
    _idx, _dsc, req, _rpy, sts, val = result
    if sts:
        raise wire.ENIPStatusError(f"{what}: {wire.status_text(sts)}", sts)
    if val is None and req.get("method", "read") == "read":
        raise wire.ENIPError(f"{what}: reply carries no data")
    return val
