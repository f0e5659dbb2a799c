"""``enip_client`` / ``python -m cpppo.enip.client.connector``: the command line of spec 2.1.4.

The flags shared with ``enip_get_attribute`` are added by :func:`add_common`; user errors end
in one line on stderr and exit status 1 (2 for bad flags, as argparse does).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cpppo
from cpppo.enip.cli.io import add_io, run_io
from cpppo.enip.client import connector as cli
from cpppo.enip.client.connection import await_response, parse_address
from cpppo.enip.client.operations import OperationError, parse_int, parse_route_path, parse_send_path
from cpppo.enip.client.wire import ENIPError
from cpppo.log import configure

__all__ = ["add_common", "connection_kwds", "gather", "positive_seconds", "run", "unreachable"]

log = logging.getLogger("enip.cli")


def add_connection(ap: argparse.ArgumentParser) -> None:
    """The flags saying how to reach a device: -v, -a, -u, -b, -t (every client command)."""
    ap.add_argument("-v", "--verbose", action="count", default=0, help="Display logging information")
    ap.add_argument("-a", "--address", default="localhost",
                    help="EtherNet/IP interface[:port] to connect to (default: localhost:44818); "
                         "with --broadcast, a comma-separated list is probed in turn")
    ap.add_argument("-u", "--udp", action="store_true", help="Use UDP/IP (default: TCP/IP)")
    ap.add_argument("-b", "--broadcast", action="store_true",
                    help="Allow UDP/IP broadcast; gather replies from every responder until the timeout")
    ap.add_argument("-t", "--timeout", type=positive_seconds, default=5.0,
                    help="I/O timeout seconds (default: 5.0)")


def add_common(ap: argparse.ArgumentParser) -> None:
    """The flags enip_client and enip_get_attribute share."""
    add_connection(ap)
    ap.add_argument("-r", "--repeat", type=int, default=1, help="Repeat the operations this many times")
    ap.add_argument("-d", "--depth", type=int, default=0, help="Pipelining depth (default: 0, synchronous)")
    ap.add_argument("-m", "--multiple", type=int, nargs="?", const=500, default=0,
                    help="Use Multiple Service Packets of up to this many bytes (default with -m: 500)")
    ap.add_argument("--route-path", default=None,
                    help="Route path: <port>/<link> or JSON (default: '1/0'); 0/false for none")
    ap.add_argument("--send-path", default=None,
                    help="Send path of the Message Router (default: '@6/1'); '' for no Unconnected Send")
    ap.add_argument("-S", "--simple", action="store_true",
                    help="Access a simple (non-routing) device: --send-path='' --route-path=false")
    ap.add_argument("-l", "--log", help="Log file (10MB, rotated through 5 copies)")
    ap.add_argument("-p", "--print", dest="printing", action="store_true", default=False,
                    help="Print a summary of the operations to stdout")
    ap.add_argument("--no-print", dest="printing", action="store_false", help="Don't print (the default)")
    ap.add_argument("-i", "--list-identity", action="store_true", help="List Identity")
    ap.add_argument("-s", "--list-services", action="store_true", help="List Services")
    ap.add_argument("-I", "--list-interfaces", action="store_true", help="List Interfaces")
    ap.add_argument("-L", "--legacy", metavar="COMMAND", help="Send a Legacy command, eg. 0x0001")


def connection_kwds(args: argparse.Namespace) -> dict[str, Any]:
    """host, port, route_path and send_path from the parsed flags (raises ValueError)."""
    host, port = parse_address(args.address.split(",")[0])
    route_path: Any = parse_route_path(args.route_path) if args.route_path is not None else None
    send_path = parse_send_path(args.send_path) if args.send_path is not None else None
    if args.simple:
        route_path, send_path = False, ""
    return {"host": host, "port": port, "route_path": route_path, "send_path": send_path}


def gather(args: argparse.Namespace, requests: list[tuple[str, str]]) -> int:
    """Send each List/Legacy request; print every reply until the timeout (broadcast) or the
    first reply (unicast)."""
    addresses = [parse_address(a) for a in args.address.split(",")]
    host, port = addresses[0]
    failures = 0
    with cli.client(host=host, port=port, timeout=args.timeout, udp=args.udp,
                    broadcast=args.broadcast) as conn:
        for label, method in requests:
            for address in addresses if args.broadcast else addresses[:1]:
                if method.startswith("legacy"):
                    conn.legacy(parse_int(method.split(":", 1)[1]), timeout=args.timeout, address=address)
                else:
                    getattr(conn, method)(timeout=args.timeout, address=address)
            deadline = time.monotonic() + args.timeout
            received = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                reply, _ = await_response(conn, timeout=left)
                if not reply:
                    break
                body = next((reply[k] for k in ("enip.CIP.list_identity.CPF", "enip.CIP.list_services.CPF",
                                                "enip.CIP.list_interfaces.CPF", "enip.CIP.legacy.CPF")
                             if k in reply), reply)
                flat = {k: (str(v) if isinstance(v, (bytes, bytearray)) else v) for k, v in body.items()}
                print(f"{label} {received} from {tuple(reply.get('peer') or conn.addr)}: "
                      f"{json.dumps(flat, indent=4)}", flush=True)
                received += 1
                if not args.broadcast:
                    break
            if not received:
                probed = ", ".join(f"{h}:{p}" for h, p in (addresses if args.broadcast else addresses[:1]))
                print(f"{label}: no response from {probed} within {args.timeout:g}s", file=sys.stderr)
                failures += 1
    return 1 if failures else 0


def run(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="enip_client", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read/Write Tags (and Get/Set Attributes) of an EtherNet/IP CIP Controller.",
        epilog="Tags: Tag Tag[3] Tag[1-10] Tag=1 'Tag[4-6]=(DINT)1,2,3' Tag=9.9 @1/1/7 @0x93/3/10=(REAL)1.0")
    add_common(ap)
    ap.add_argument("-n", "--no-fragment", dest="fragment", action="store_false", default=True,
                    help="Use plain Read/Write Tag (not Fragmented) requests")
    ap.add_argument("tags", nargs="*", help="Tags to read/write (eg. SCADA[1]=99 SCADA[0-10])")
    add_io(ap)
    return dispatch(ap, argv, items="tags", io=tag_io)


def dispatch(ap: argparse.ArgumentParser, argv: Sequence[str] | None, *, items: str,
             io: Callable[[argparse.Namespace], int]) -> int:
    """Parse ``argv``; run the -i/-s/-I/-L requests asked for, then ``io(args)`` when the
    positional ``items`` (tags or attributes) were given.  Errors end in one line, exit 1."""
    args = ap.parse_args(argv)
    bad = bad_flag(args)
    if bad:
        print(f"{ap.prog}: error: {bad}", file=sys.stderr)
        return 2
    configure(args.verbose, args.log)
    requests = [(label, method) for flag, label, method in (
        (args.list_identity, "List Identity", "list_identity"),
        (args.list_services, "List Services", "list_services"),
        (args.list_interfaces, "List Interfaces", "list_interfaces"),
        (args.legacy, f"Legacy {args.legacy}", f"legacy:{args.legacy}")) if flag]
    implicit = getattr(args, "io", None)
    if not requests and not getattr(args, items) and not implicit:
        ap.error(f"at least one {items[:-1]} (or -i/-s/-I/-L) is required")
    try:
        status = gather(args, requests) if requests else 0
        if getattr(args, items):
            status |= io(args)
        if implicit:
            status |= run_io(args)
        return status
    except OSError as exc:
        print(f"{ap.prog}: {unreachable(args.address, exc)}", file=sys.stderr)
        return 1
    except (OperationError, ENIPError, ValueError) as exc:
        print(f"{ap.prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


def bad_flag(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags shared by the client commands (None: nothing), checked
    before anything is sent: counts that cannot be negative, and the send and route paths."""
    for flag, value, least in (("--repeat", args.repeat, 1), ("--depth", args.depth, 0),
                               ("--multiple", args.multiple, 0)):
        if value < least:
            return f"{flag} must be >= {least}, got {value}"
    try:
        if args.send_path is not None:
            parse_send_path(args.send_path)
        if args.route_path is not None:
            parse_route_path(args.route_path)
    except ValueError as exc:
        return str(exc)
    return None


def unreachable(address: str, exc: OSError) -> str:
    """One line for a network error talking to ``address`` (the -a text): which device, and why
    (``cannot reach 10.0.0.1:44818: Connection refused``)."""
    try:
        host, port = parse_address(address.split(",")[0])
        where = f"{host}:{port}"
    except ValueError:
        where = address
    why = re.sub(r"^\[Errno -?\d+\] ", "", exc.strerror or str(exc)) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        why = "no answer (timed out)"
    if isinstance(exc, ENIPError) and not isinstance(exc, TimeoutError) \
            and not isinstance(exc.__cause__, OSError):  # reached, but it does not speak EtherNet/IP
        return f"{where}: {why}"
    return f"cannot reach {where}: {why}"


def positive_seconds(text: str) -> float:
    """argparse type for a timeout: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


def tag_io(args: argparse.Namespace) -> int:
    kwds = connection_kwds(args)
    operations = list(cli.parse_operations(args.tags * max(1, args.repeat)))  # syntax errors first
    begun = cpppo.timer()
    with cli.connector(host=kwds["host"], port=kwds["port"], timeout=args.timeout) as conn:
        log.log(cpppo.NORMAL, "Connect:  Success in %7.3f/%7.3fs", cpppo.timer() - begun, args.timeout)
        start = cpppo.timer()
        failures, transactions = conn.process(
            operations=operations, depth=args.depth, multiple=args.multiple, fragment=args.fragment,
            timeout=args.timeout, printing=args.printing, validating=True,
            route_path=kwds["route_path"], send_path=kwds["send_path"])
        elapsed = cpppo.timer() - start
    count = len(transactions)
    summary = (f"Client Tag I/O Average {count / elapsed if elapsed else 0.0:7.3f} TPS "
               f"({elapsed / count if count else 0.0:7.3f}s ea); {count} operations, {failures} failed")
    log.log(cpppo.NORMAL, "%s", summary)
    if args.printing:
        print(summary, flush=True)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``enip_client``."""
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
