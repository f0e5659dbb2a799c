"""What an injected ``error`` fault makes of a CIP request: the reply a controller sends with
that general status, for every request or for the named services and tags only.

Names a fault's ``only`` list may hold: a service's name (``READ_TAG``, ``WRITE_TAG``,
``GET_ATTRIBUTE_SINGLE``, ... as :class:`cpppo.enip.codec.cip.Service` spells them, any case)
or its code (``0x4C``), tag names (the symbolic segments of the request path) and the whole
path of a member or element (``Tank[3].Level``).  An
Unconnected Send or Multiple Service Packet is looked into, so ``error 0x05:Flow`` fails a
Read Tag of ``Flow`` however the client wraps it.
"""

from __future__ import annotations

from collections.abc import Iterator

from cpppo.enip.codec import CodecError, cip, epath
from cpppo.enip.codec.cip import Reply, Service
from cpppo.faults import FaultState

__all__ = ["error_reply", "request_names"]

_SERVICE_NAMES = {value: name for name, value in vars(Service).items()
                  if name.isupper() and isinstance(value, int)}
_MAX_DEPTH = 4  # how deep to look into wrapped requests


def request_names(message: bytes, depth: int = 0) -> Iterator[str]:
    """The service names/codes and tag names of a CIP request (and of those it wraps)."""
    try:
        service, raw_path, data = cip.split_request(message)
    except CodecError:
        return
    yield f"0x{service:02X}"
    if service in _SERVICE_NAMES:
        yield _SERVICE_NAMES[service]
    try:
        segments = epath.decode(raw_path)
        for segment in segments:
            name = getattr(segment, "name", None)
            if isinstance(name, str):
                yield name
        if len(segments) > 1:
            yield epath.format_path(segments)  # a member or element path: Tank[3].Level
    except CodecError:
        pass
    if depth >= _MAX_DEPTH:
        return
    try:
        if service == Service.UNCONNECTED_SEND:
            yield from request_names(cip.UnconnectedSend.decode(data).message, depth + 1)
        elif service == Service.MULTIPLE_SERVICE_PACKET:
            for inner in cip.decode_multiple(data):
                yield from request_names(inner, depth + 1)
    except CodecError:
        pass


def error_reply(message: bytes, faults: FaultState) -> bytes | None:
    """The error reply an active ``error`` fault gives ``message``, or None to answer normally."""
    fault = faults.current()
    if fault is None or fault.kind != "error":
        return None
    if fault.only:
        wanted = {n.casefold() for n in fault.only}
        if not any(n.casefold() in wanted for n in request_names(message)):
            return None
    service = message[0] & 0x7F if message else 0
    return Reply(service, fault.code).encode()
