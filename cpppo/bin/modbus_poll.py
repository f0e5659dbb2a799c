"""`modbus_poll`: write, then poll, Modbus/TCP or Modbus/RTU registers, logging every change
until ^C.

    modbus_poll -a :1502 40001-40010=0 40001-40100
    modbus_poll -a :1502 --count 1 40001-40010      # read once, print, exit
    modbus_poll --serial /dev/ttyUSB0 --baud 9600 -u 3 -c 1 40001-40010

Each change is logged as ``40009 ==   999 (was: 99)``.  With ``-c/--count N`` it stops by
itself after N polls (exit 0; 1 if a register never got a value): the first poll prints every
register's value to stdout (``40001 == 9``), later ones the changes (``40001 == 10 (was: 9)``).
Also runnable as ``python -m cpppo.bin.modbus_poll``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from cpppo import log as cpppo_log
from cpppo.bin.modbus_sim import add_line_arguments, line_settings, parse_endpoint

__all__ = ["main"]

log = logging.getLogger("modbus_poll")

EPILOG = """\
Register ranges, with optional values to write first:

  <begin>[-<end>][=<value>[,<value>...]]

examples:
  modbus_poll -a localhost:1502 40001-40010=0 40001-40100
  modbus_poll -a localhost:1502 -c 1 40001-40010     # one-shot read
  modbus_poll --serial /dev/ttyUSB0 --baud 9600 --parity N -u 2 -c 1 40001-40010
  modbus_poll -a 10.0.0.5:502 --rtu-tcp -u 2 40001    # RTU framing over TCP
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modbus_poll", description="Poll (and write) Modbus/TCP or Modbus/RTU PLC registers.",
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
    parser.add_argument("-c", "--count", type=int, default=None,
                        help="stop after this many polls, printing values to stdout (default: until ^C)")
    add_line_arguments(parser)
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
        line = line_settings(args)
        specs = [parse_spec(text) for text in args.registers]
        if args.rate <= 0:
            raise ValueError(f"bad rate {args.rate}: must be a positive number of seconds")
        if args.timeout <= 0:
            raise ValueError(f"bad timeout {args.timeout}: must be a positive number of seconds")
        if not 0 <= args.unit <= 255:
            raise ValueError(f"bad unit id {args.unit}: must be 0..255")
        if args.reach < 1:
            raise ValueError(f"bad reach {args.reach}: must be >= 1")
        if args.count is not None and args.count < 1:
            raise ValueError(f"bad count {args.count}: must be >= 1")
    except ValueError as exc:
        print(f"modbus_poll: {exc}", file=sys.stderr)
        return 2
    if args.serial is not None:  # a port that cannot be opened is said at once, not polled
        from cpppo.modbus.serial_line import open_serial

        try:
            open_serial(args.serial, line).close()
        except ValueError as exc:
            print(f"modbus_poll: {exc}", file=sys.stderr)
            return 1
    if args.verbose < 2:  # pymodbus logs each failed connect at ERROR; ours says "failing" once
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    poller = poller_modbus("modbus_poll", host=host or "localhost", port=port, rate=args.rate,
                           reach=args.reach, unit=args.unit, timeout=args.timeout,
                           serial=args.serial, settings=line, rtu=args.rtu_tcp)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    registers: list[int] = []
    try:
        for spec in specs:  # the writes first, so that every poll sees them
            if spec.values:
                poller.write(spec.begin, list(spec.values) if len(spec.values) > 1 else spec.values[0])
        for spec in specs:
            numbers = range(spec.begin, spec.end + 1)
            for number in numbers:
                poller.poll(number)
            registers.extend(n for n in numbers if n not in registers)
    except (PlcError, ValueError) as exc:  # a PlcError already begins with the poller's name
        print(exc if isinstance(exc, PlcError) else f"modbus_poll: {exc}", file=sys.stderr)
        poller.stop()
        return 1
    if args.count is not None:
        return _counted(poller, registers, args, stop, poller.where)
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


def _counted(poller: Any, registers: list[int], args: argparse.Namespace, stop: threading.Event,
             where: str) -> int:
    """``--count N``: N polls, values (then changes) printed to stdout; 1 if any register
    never got a value."""
    deadline = time.monotonic() + args.timeout + args.rate
    while (any(poller.read(n) is None for n in registers) and not poller.failing
           and time.monotonic() < deadline and not stop.wait(0.02)):
        pass  # until the first poll has answered (or failed)
    seen: dict[int, Any] = {}
    for polls in range(args.count):
        if polls and stop.wait(args.rate):
            break
        for number in registers:
            value = poller.read(number)
            if value is None or (number in seen and seen[number] == value):
                continue
            was = f" (was: {seen[number]})" if number in seen else ""
            print(f"{number} == {value}{was}", flush=True)
            seen[number] = value
    poller.stop()
    poller.join(timeout=args.timeout + 1.0)
    missing = [n for n in registers if n not in seen]
    if missing:
        from cpppo.remote.plc_modbus import merge

        spans = ", ".join(str(b) if c == 1 else f"{b}-{b + c - 1}" for b, c in merge((n, 1) for n in missing))
        print(f"modbus_poll: no value from {where} for {spans}", file=sys.stderr)
        return 1
    return 0


def _ranges(ranges: set[tuple[int, int]]) -> str:
    return ", ".join(f"{b}-{b + c - 1}" for b, c in sorted(ranges))


if __name__ == "__main__":
    raise SystemExit(main())
