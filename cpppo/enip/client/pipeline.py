"""The pipeline engine behind ``connector.pipeline`` and ``.synchronous``.

Operations (dicts from ``parse_operations``) become CIP requests ("parts"): one per read, one
per Get/Set Attribute, one or more per write (data larger than one request are split into
Write Tag Fragmented pieces).  Parts are bundled into Multiple Service Packets up to
``multiple`` bytes (request and estimated reply), framed, and kept up to ``depth`` requests in
flight.  A read whose reply says "partial transfer" (0x06) is continued with Read Tag
Fragmented at the next offset, so any size of data works.  Results come back as the spec's
6-tuples ``(idx, dsc, req, rpy, sts, val)`` in the order of the operations.

Text written to a tag goes as Logix STRING structures (type 0x02A0, as Logix clients send
it).  A device that refuses that type (0xFF/0x2107: its tag is a CIP STRING, as the upstream
simulator keeps them) gets the same text again as CIP STRINGs (0xD0).  Until the connection
has seen a structure write succeed, such a write is a probe: nothing after it is sent before
its reply, so a retry never overtakes a later operation.  Once a retry succeeds, the
connection's later STRING writes go as CIP STRINGs straight away (``conn.string_type``).
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.enip.client import wire
from cpppo.enip.client.connection import client, reply_record
from cpppo.enip.client.operations import LOGIX_STRING_TYPE, parse_operation
from cpppo.enip.codec.encapsulation import Command

__all__ = ["MAX_FRAGMENT", "Result", "pipeline"]

MAX_FRAGMENT = 440      # data bytes per Write Tag Fragmented piece
_SHORT = {wire.READ_TAG: "Read Tag", wire.READ_FRAG: "Read Frag", wire.WRITE_TAG: "Write Tag",
          wire.WRITE_FRAG: "Write Frag", wire.GET_ATTRIBUTES_ALL: "G_A_A",
          wire.GET_ATTRIBUTE_SINGLE: "G_A_S", wire.SET_ATTRIBUTE_SINGLE: "S_A_S"}
_METHODS = {"read", "write", "get_attribute_single", "get_attributes_all", "set_attribute_single"}
CIP_STRING = 0xD0

Result = tuple[int, str, Any, Any, Any, Any]


class _Op:
    """One operation on its way through the pipeline."""

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
        self.last_reply: wire.CIPReply | None = None

    @property
    def done(self) -> bool:
        return self.outstanding == 0


class _Part:
    __slots__ = ("cip", "estimate", "offset", "op", "service", "tag_type")

    def __init__(self, op: _Op, service: int, cip: bytes, estimate: int, offset: int = 0,
                 tag_type: int | None = None) -> None:
        self.op, self.service, self.cip, self.estimate, self.offset = op, service, cip, estimate, offset
        self.tag_type = tag_type  # of a write's data
        op.outstanding += 1


def _parts(op: _Op, fragment: bool, string_type: int | None = None) -> list[_Part]:
    spec = op.op
    method = spec.get("method", "read")
    path = spec["path"]
    elements = int(spec.get("elements", 1))
    if method not in _METHODS:
        raise ValueError(f"unknown operation method {method!r}")
    if method == "read":
        offset = int(spec.get("offset") or 0)
        size = wire.element_size(spec.get("tag_type")) or 4
        if fragment or spec.get("fragment") or offset:
            cip = wire.cip_request(wire.READ_FRAG, path, struct.pack("<HI", elements, offset))
            return [_Part(op, wire.READ_FRAG, cip, 6 + elements * size, offset)]
        cip = wire.cip_request(wire.READ_TAG, path, struct.pack("<H", elements))
        return [_Part(op, wire.READ_TAG, cip, 6 + elements * size)]
    if method == "write":
        tag_type = spec.get("tag_type") or 0xC3
        if tag_type == LOGIX_STRING_TYPE and string_type == CIP_STRING:
            tag_type = CIP_STRING  # this device keeps CIP STRINGs (learned on this connection)
        return _write_parts(op, tag_type, fragment)
    if method == "set_attribute_single":
        data = spec.get("data", [])
        tag_type = spec.get("tag_type")
        raw = wire.encode_values(tag_type, data) if tag_type else bytes(int(v) & 0xFF for v in data)
        cip = wire.cip_request(wire.SET_ATTRIBUTE_SINGLE, path, raw)
        return [_Part(op, wire.SET_ATTRIBUTE_SINGLE, cip, 4)]
    service = wire.GET_ATTRIBUTE_SINGLE if method == "get_attribute_single" else wire.GET_ATTRIBUTES_ALL
    return [_Part(op, service, wire.cip_request(service, path), 4 + 4 * elements)]


def _write_parts(op: _Op, tag_type: int, fragment: bool) -> list[_Part]:
    """The Write Tag request, or the Write Tag Fragmented pieces, of a write as ``tag_type``."""
    spec = op.op
    path, elements = spec["path"], int(spec.get("elements", 1))
    raw = wire.encode_tag_values(tag_type, spec["data"])
    head = wire.type_prefix(tag_type) + struct.pack("<H", elements)
    offset = int(spec.get("offset") or 0)
    if not (fragment or spec.get("fragment") or offset or len(raw) > MAX_FRAGMENT):
        return [_Part(op, wire.WRITE_TAG, wire.cip_request(wire.WRITE_TAG, path, head + raw), 4,
                      tag_type=tag_type)]
    size = wire.element_size(tag_type)
    step = max(size, MAX_FRAGMENT // size * size) if size else max(len(raw), 1)
    parts = []
    for at in range(0, max(len(raw), 1), step):
        body = head + struct.pack("<I", offset + at) + raw[at:at + step]
        parts.append(_Part(op, wire.WRITE_FRAG, wire.cip_request(wire.WRITE_FRAG, path, body), 4,
                           offset + at, tag_type))
    return parts


def _complete(op: _Op, reply: wire.CIPReply, service: int) -> None:
    """Fold one part's reply into its operation."""
    if reply.status:
        if not op.sts:
            op.sts = reply.sts
        return
    if service in (wire.READ_TAG, wire.READ_FRAG):
        return  # values are decoded when the operation completes
    if service in (wire.GET_ATTRIBUTE_SINGLE, wire.GET_ATTRIBUTES_ALL):
        op.val = list(reply.data)
    else:
        op.val = True


def _finish(op: _Op) -> Result:
    rpy = reply_record(op.last, op.last_reply) if op.last else None
    if op.sts:
        op.val = None
    elif op.tag_type is not None:
        layer = rpy.get("read_tag") or rpy.get("read_frag") if len(op.raw) == 1 and rpy else None
        if isinstance(layer, dict) and "data" in layer:
            op.val = layer["data"]      # already decoded for the reply record
        else:
            op.val = wire.decode_values(op.tag_type, b"".join(op.raw), op.handle)
    return op.idx, op.dsc, op.op, rpy, op.sts, op.val


def pipeline(conn: client, operations: Iterable[Any], index: int = 0, fragment: bool = False,
             multiple: int = 0, timeout: float | None = None, depth: int = 1,
             route_path: Any = None, send_path: Any = None) -> Iterator[Result]:
    """Issue ``operations`` on ``conn`` with up to ``depth`` requests in flight; yield the
    6-tuples in operation order as their replies arrive (see the module docstring)."""
    depth = max(1, int(depth or 1))
    multiple = int(multiple or 0)
    timeout = conn.timeout if timeout is None else timeout
    route, send = conn.paths(route_path, send_path)
    wrap = wire.unconnected_wrapper(route, send) if send else None
    source = iter(operations)
    queue: deque[_Part] = deque()
    pending: deque[_Op] = deque()
    inflight: dict[int, tuple[list[_Part], bool]] = {}
    counters = {"idx": index, "sent": 0, "received": 0}
    exhausted = False
    barrier: int | None = None  # the context of an outstanding probe (see the module docstring)

    def probe(part: _Part) -> bool:
        return part.tag_type == LOGIX_STRING_TYPE and getattr(conn, "string_type", None) != LOGIX_STRING_TYPE

    def learn(string_type: int) -> None:
        with contextlib.suppress(AttributeError):
            conn.string_type = string_type

    def pull() -> bool:
        nonlocal exhausted
        if exhausted:
            return False
        for spec in source:
            if isinstance(spec, str):
                spec = parse_operation(spec)
            op = _Op(counters["idx"], spec)
            counters["idx"] += 1
            pending.append(op)
            queue.extend(_parts(op, fragment, getattr(conn, "string_type", None)))
            return True
        exhausted = True
        return False

    def group() -> list[_Part]:
        if not queue and not pull():
            return []
        first = queue.popleft()
        bundle = [first]
        if multiple <= 0 or first.op.raw or probe(first):  # continuations and probes travel alone
            return bundle
        req, rpy = 4 + len(first.cip), 4 + first.estimate
        while True:
            if not queue and not pull():
                break
            nxt = queue[0]
            if nxt.op.raw or req + 2 + len(nxt.cip) > multiple or rpy + 2 + nxt.estimate > multiple:
                break
            req, rpy = req + 2 + len(nxt.cip), rpy + 2 + nxt.estimate
            bundle.append(queue.popleft())
            if probe(nxt):
                break
        return bundle

    def issue(bundle: list[_Part]) -> None:
        bundled = len(bundle) > 1
        cip = wire.multiple_request([p.cip for p in bundle]) if bundled else bundle[0].cip
        for part in bundle:
            if not part.op.dsc:
                part.op.dsc = f"{'Multiple' if bundled else 'Single'} {_SHORT[part.service]}"
        ctx = conn.next_context()
        try:
            conn.send(wire.rr_frame(wrap(cip) if wrap else cip, conn.session, ctx), timeout=timeout)
        except wire.ENIPConnectionError as exc:
            if not counters["sent"]:
                raise
            raise wire.ENIPConnectionError(
                f"Communication ceased before harvesting all pipeline responses: "
                f"{counters['received']:3d}/{counters['sent']:3d} ({exc})") from None
        inflight[ctx] = (bundle, bundled)
        if any(probe(part) for part in bundle):
            nonlocal barrier
            barrier = ctx
        counters["sent"] += 1
        conn.requests_sent += 1

    def harvest() -> None:
        nonlocal barrier
        try:
            got = conn.frame(timeout=timeout)
        except wire.ENIPConnectionError:
            raise wire.ENIPConnectionError(
                f"Communication ceased before harvesting all pipeline responses: "
                f"{counters['received']:3d}/{counters['sent']:3d}") from None
        if got is None:
            raise wire.ENIPTimeout(f"Failed to receive any response within {timeout}s "
                                   f"({len(inflight)} requests outstanding)")
        header, payload, _ = got
        ctx = int.from_bytes(header.context, "little")
        entry = inflight.pop(ctx, None)
        if entry is None or header.command != Command.SEND_RR_DATA:
            return  # a stray reply: not ours
        counters["received"] += 1
        if ctx == barrier:
            barrier = None
        bundle, bundled = entry
        if header.status:
            for part in bundle:
                part.op.outstanding -= 1
                part.op.sts = part.op.sts or ("EtherNet/IP", header.status)
            return
        message = wire.rr_message(payload)
        reply = wire.decode_cip_reply(message)
        if bundled and reply.status in (0, wire.MSP_ERROR) and reply.service == wire.MULTIPLE_SERVICE:
            pieces = wire.decode_msp(reply.data)
            if len(pieces) != len(bundle):
                raise wire.CodecError(f"Multiple Service Packet reply has {len(pieces)} replies "
                                      f"for {len(bundle)} requests")
            replies = [(wire.decode_cip_reply(raw), raw) for raw in pieces]
        else:
            replies = [(reply, message)] * len(bundle)
        for part, (rpy, raw) in zip(bundle, replies, strict=True):
            op = part.op
            op.outstanding -= 1
            op.last, op.last_reply = raw, rpy
            if part.service in (wire.READ_TAG, wire.READ_FRAG) and rpy.status in (0, wire.PARTIAL) \
                    and len(rpy.data) >= 2:
                op.tag_type, op.handle, chunk = wire.split_typed(rpy.data)
                op.raw.append(chunk)
                if rpy.status == wire.PARTIAL:
                    if not chunk:
                        op.sts = rpy.status
                        continue
                    offset = part.offset + len(chunk)
                    elements = int(op.op.get("elements", 1))
                    body = struct.pack("<HI", elements, offset)
                    cip = wire.cip_request(wire.READ_FRAG, op.op["path"], body)
                    queue.appendleft(_Part(op, wire.READ_FRAG, cip, 0, offset))
                continue
            if part.tag_type == LOGIX_STRING_TYPE and (op.retyped or wire.is_type_mismatch(rpy)):
                if not op.retyped:  # resend the text as CIP STRINGs, in place of what is left
                    op.retyped = True
                    for stale in [p for p in queue if p.op is op]:
                        queue.remove(stale)
                        op.outstanding -= 1
                    queue.extendleft(reversed(_write_parts(op, CIP_STRING, fragment)))
                continue  # a reply to the structure write, superseded by the retry
            if not rpy.status and part.tag_type in (LOGIX_STRING_TYPE, CIP_STRING) \
                    and op.op.get("tag_type") == LOGIX_STRING_TYPE:
                learn(part.tag_type)  # how this device takes text
            _complete(op, rpy, part.service)

    while True:
        while len(inflight) < depth and barrier is None:
            bundle = group()
            if not bundle:
                break
            issue(bundle)
        if not inflight:
            if queue or not exhausted:
                continue
            break
        harvest()
        while pending and pending[0].done:
            yield _finish(pending.popleft())


def describe(result: Result) -> dotdict:
    """A 6-tuple as a dotdict (for logging)."""
    idx, dsc, req, rpy, sts, val = result
    return dotdict(idx=idx, dsc=dsc, req=req, rpy=rpy, sts=sts, val=val)
