"""`modbus_poll`: write, then poll, Modbus/TCP registers, logging every change until ^C.

    modbus_poll -a :1502 40001-40010=0 40001-40100

Each change is logged as ``40009 ==   999 (was: 99)``.  Also runnable as
``python -m cpppo.bin.modbus_poll``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from cpppo import log as cpppo_log
from cpppo.bin.modbus_sim import parse_endpoint

__all__ = ["main"]

log = logging.getLogger("modbus_poll")

EPILOG = """\
Register ranges, with optional values to write first:

  <begin>[-<end>][=<value>[,<value>...]]

example:
  modbus_poll -a localhost:1502 40001-40010=0 40001-40100
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modbus_poll", description="Poll (and write) Modbus/TCP PLC registers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    parser.add_argument("-l", "--log", help="log to this file (rotated) instead of stderr")
    parser.add_argument("-a", "--address", default="localhost:502",
                        help="[<host>][:<port>] of the PLC (default: localhost:502)")
    parser.add_argument("-u", "--unit", type=int, default=1, help="unit id (default: 1)")
    parser.add_argument("-R", "--rate", type=float, default=1.0,
                        help="poll period in seconds (default: 1.0)")
    parser.add_argument("-r", "--reach", type=int, default=1,
                        help="merge polls of registers this close together (default: 1)")
    parser.add_argument("-t", "--timeout", type=float, default=2.0, help="I/O timeout (default: 2.0)")
    parser.add_argument("registers", nargs="+", help="<begin>[-<end>][=<value>[,<value>...]]")
    return parser


def _changes(poller: Any, registers: list[int], seen: dict[int, Any]) -> None:
    for number in registers:
        value = poller.read(number)
        if value != seen.get(number):
            log.warning("%5d == %5s (was: %s)", number, value, seen.get(number))
            seen[number] = value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `modbus_poll`."""
    args = _parser().parse_args(argv)
    cpppo_log.configure(args.verbose, args.log)
    from cpppo.modbus.address import parse_spec
    from cpppo.remote.plc import PlcError
    from cpppo.remote.plc_modbus import poller_modbus

    try:
        host, port = parse_endpoint(args.address)
        specs = [parse_spec(text) for text in args.registers]
        if args.rate <= 0:
            raise ValueError(f"bad rate {args.rate}: must be a positive number of seconds")
        if args.timeout <= 0:
            raise ValueError(f"bad timeout {args.timeout}: must be a positive number of seconds")
        if not 0 <= args.unit <= 255:
            raise ValueError(f"bad unit id {args.unit}: must be 0..255")
        if args.reach < 1:
            raise ValueError(f"bad reach {args.reach}: must be >= 1")
    except ValueError as exc:
        print(f"modbus_poll: {exc}", file=sys.stderr)
        return 2
    if args.verbose < 2:  # pymodbus logs each failed connect at ERROR; ours says "failing" once
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    poller = poller_modbus("modbus_poll", host=host or "localhost", port=port, rate=args.rate,
                           reach=args.reach, unit=args.unit, timeout=args.timeout)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    registers: list[int] = []
    try:
        for spec in specs:
            numbers = range(spec.begin, spec.end + 1)
            for number in numbers:
                poller.poll(number)
            registers.extend(n for n in numbers if n not in registers)
        for spec in specs:
            if spec.values:
                poller.write(spec.begin, list(spec.values) if len(spec.values) > 1 else spec.values[0])
    except (PlcError, ValueError) as exc:  # a PlcError already begins with the poller's name
        print(exc if isinstance(exc, PlcError) else f"modbus_poll: {exc}", file=sys.stderr)
        poller.stop()
        return 1
    seen: dict[int, Any] = {}
    failing = polling = ""
    while not stop.wait(min(args.rate, 1.0)):
        now = (_ranges(poller.failing), _ranges(poller.polling))
        if now != (failing, polling):
            failing, polling = now
            log.log(cpppo_log.NORMAL, "failing: %s, polling: %s", failing, polling)
        _changes(poller, registers, seen)
    poller.stop()
    poller.join(timeout=args.timeout + 1.0)
    return 0


def _ranges(ranges: set[tuple[int, int]]) -> str:
    return ", ".join(f"{b}-{b + c - 1}" for b, c in sorted(ranges))


if __name__ == "__main__":
    raise SystemExit(main())
