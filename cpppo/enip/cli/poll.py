"""``python -m cpppo.enip.client.poll``: poll named parameters of an EtherNet/IP CIP device every
cycle and print each value (spec 2.1.2 and 2.1.7)::

    python -m cpppo.enip.client.poll -v TCPIP Identity
    python -m cpppo.enip.client.poll -a 10.0.1.2 -c 0.5 "Motor Velocity" "Output Current"

Parameters are the gateway's named PARAMETERS (by default ``ab.powerflex_750_series``, which
includes ``Product Name`` and ``Identity``) plus ``TCPIP``; with ``--pass-thru`` any Tag or
``@class/instance/attribute`` is polled too.  Each value prints as ``<name>: <value>``; each
failed poll prints one line on stderr and the next attempt backs off.  Runs until interrupted,
or for ``--count`` polls; the exit status is 1 if the last poll failed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import cpppo
from cpppo.enip.cli.client import positive_seconds, unreachable
from cpppo.enip.client import poll
from cpppo.enip.client.connection import parse_address
from cpppo.enip.client.operations import parse_route_path
from cpppo.enip.client.proxy import attribute_operations
from cpppo.log import configure

__all__ = ["run"]

log = logging.getLogger("enip.poll")


class Printer:
    """The ``process`` and ``failure`` callbacks of ``poll.run``: prints values and failures,
    counts whole polls, and sets ``done`` after ``count`` of them (None: never)."""

    def __init__(self, via: Any, params: Sequence[str], count: int | None = None, address: str = "") -> None:
        self.via, self.width, self.address = via, len(params), address
        self.count = count
        self.done = False
        self.polls = self.values = 0
        self.failed = False

    def _polled(self) -> None:
        self.polls += 1
        if self.count is not None and self.polls >= self.count:
            self.done = True

    def __call__(self, par: Any, val: Any) -> None:
        if not self.polls and not self.values:
            log.log(cpppo.NORMAL, "Polling begins via: %s", self.via)
        print(f"{par:>15}: {val!r}", flush=True)
        self.values += 1
        if self.values % self.width == 0:
            self.failed = False
            self._polled()

    def failure(self, exc: BaseException) -> None:
        cause = unreachable(self.address, exc) if isinstance(exc, OSError) and self.address else exc
        print(f"poll: {cause}", file=sys.stderr, flush=True)
        self.failed = True
        self.values = 0
        self._polled()


def gateway_class(name: str) -> type:
    """``module.class`` under cpppo.server.enip (eg. ab.powerflex_750_series)."""
    mod, _, cls = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(f"cpppo.server.enip.{mod}"), cls)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"unknown gateway {name!r} (eg. ab.powerflex_750_series, get_attribute.proxy)") \
            from None
    return found


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m cpppo.enip.client.poll", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Poll parameters of an EtherNet/IP CIP device via a proxy gateway "
                    "(an A-B PowerFlex 750, by default).",
        epilog="Names: TCPIP, Identity, 'Product Name', 'Motor Velocity', ... (see cpppo.server.enip.ab);\n"
               "with --pass-thru, also Tags and @class/instance/attribute, eg. 'SCADA[0-9]' @1/1/7")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="Display logging information")
    ap.add_argument("-l", "--log", help="Log file (10MB, rotated through 5 copies)")
    ap.add_argument("-a", "--address", default="localhost",
                    help="EtherNet/IP CIP device [<host>][:<port>] (default: localhost:44818)")
    ap.add_argument("-c", "--cycle", "-r", "--rate", dest="cycle", type=float, default=1.0,
                    help="Poll cycle, in seconds (default: 1.0)")
    ap.add_argument("-t", "--timeout", type=positive_seconds, default=1.0,
                    help="I/O timeout seconds (default: 1.0)")
    ap.add_argument("-n", "--count", type=int, default=None,
                    help="Stop after this many polls, failed ones included (default: poll forever)")
    ap.add_argument("--route-path", help="Route path, eg. 1/0 or JSON; 0/false for none")
    ap.add_argument("--send-path", help="Send path (default: @6/1); '' for none")
    ap.add_argument("-S", "--simple", action="store_true",
                    help="A simple (non-routing) device: no route path, no send path")
    ap.add_argument("-m", "--multiple", action="store_true",
                    help="Use Multiple Service Packets of up to ~500 bytes")
    ap.add_argument("-d", "--depth", type=int, default=None, help="Pipeline depth (default: 2)")
    ap.add_argument("-g", "--gateway", default="ab.powerflex_750_series",
                    help="Proxy gateway module.class (default: ab.powerflex_750_series)")
    ap.add_argument("-p", "--pass-thru", action="store_true",
                    help="Allow unrecognized names as Tags or CIP addresses")
    ap.add_argument("parameter", nargs="+", help="Parameters to poll")
    return ap


def run(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure(args.verbose, args.log)
    if args.count is not None and args.count < 1:
        print("poll: --count must be at least 1", file=sys.stderr)
        return 2
    if args.cycle < 0:
        print("poll: --cycle must be >= 0 seconds", file=sys.stderr)
        return 2
    try:
        host, port = parse_address(args.address)
        paths: dict[str, Any] = {}
        if args.route_path is not None:
            paths["route_path"] = parse_route_path(args.route_path)
        if args.send_path is not None:
            paths["send_path"] = args.send_path
        if args.simple:
            paths = {"route_path": False, "send_path": ""}
        via = gateway_class(args.gateway)(host=host, port=port, timeout=args.timeout, depth=args.depth,
                                          multiple=500 if args.multiple else 0, **paths)
        for attribute, _types, _units in via.parameter_substitution(args.parameter, pass_thru=args.pass_thru):
            list(attribute_operations([attribute]))  # unknown names and bad syntax: now, not on connect
    except KeyError as exc:
        print(f"poll: {exc.args[0]} (use --pass-thru to poll Tags)", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"poll: {exc}", file=sys.stderr)
        return 1
    printer = Printer(via, args.parameter, args.count, address=args.address)
    try:
        poll.poll(via=via, params=args.parameter, pass_thru=args.pass_thru, cycle=args.cycle,
                  process=printer, failure=printer.failure, latency=min(0.5, args.cycle))
    except KeyboardInterrupt:
        return 0
    finally:
        via.close_gateway()
    return 1 if printer.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m cpppo.server.enip.poll``."""
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
