"""`modbus_sim`: a simulated Modbus/TCP PLC serving the given register ranges; or several
Modbus/RTU devices on one serial line or on RTU over TCP; or a Modbus/TCP to RTU gateway.

    modbus_sim -a :1502 40001-40100=99
    modbus_sim --serial pty -u 1-3 40001-40010=0 2:40001=99     # 3 units on a new pty
    modbus_sim -a :1502 --gateway 1-3@/dev/ttyUSB0               # TCP in front, RTU behind

Also runnable as ``python -m cpppo.bin.modbus_sim``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence

from cpppo import log as cpppo_log
from cpppo.server.hosting import new_event_loop

__all__ = ["add_line_arguments", "line_settings", "main", "parse_endpoint", "parse_gateway",
           "parse_unit_specs", "parse_units"]

DEFAULT_PORT = 502

EPILOG = """\
Register ranges and their initial values:

  <begin>[-<end>][=<value>[,<value>...]]

  1-9999 coils, 10001-19999 and 100001-165536 discrete inputs, 30001-39999 and
  300001-365536 input registers, 40001-99999 and 400001-465536 holding registers.
  Values repeat to fill a range; registers without a value start at 0.  Only the
  registers named are served; others answer exception 2 (illegal data address).
  A :<type> (int16, uint16, int32, uint32, float32; :lo after a 32-bit type puts the
  low word first) sets what the registers hold; a ~<behaviour> makes them move
  (sine, ramp, square, steps, counter, walk, expr, lag, integral, playback, ...; see
  the README), and a client write to them is refused with exception 2.

Modbus/RTU (--serial PORT, or --rtu-tcp): the units on the line are -u (default 1), each
with its own registers; a spec prefixed by unit ids, <units>:<spec>, is for those units only:

  modbus_sim --serial /dev/ttyUSB0 --baud 9600 -u 1-3 40001-40010=0 2:40001=99 3:30001=5

  "--serial pty" makes a pseudo-terminal and prints the port a master opens (--link PATH
  names it by a symbolic link, removed again on exit).  A unit not on the line never
  answers.  --timing keeps the line's timing at --baud (a reply leaves after the request
  and reply would take on the wire, plus 3.5 characters of silence).

Gateway (--gateway <units>@<port>, repeatable): Modbus/TCP on -a, each unit id forwarded to
an RTU line, a serial port or <host>:<port> for RTU over TCP; a silent unit answers
exception 0x0B, a unit no line routes exception 0x0A:

  modbus_sim -a :1502 --gateway 1-3@/dev/ttyUSB0 --gateway 7@10.0.0.5:502

examples:
  modbus_sim -a :1502 40001-40100=99 1-16=0 30001-30010=5
  modbus_sim -a :1502 1=0 '30001-30002:float32~expr(r1 * 120 + noise(2))' \
             '30003~counter(rate=1)' '30004~sine(amplitude=100, period=60, offset=500)'
  modbus_sim --serial pty -u 1,2 40001-40010=0
"""


def parse_unit_specs(texts: Sequence[str], units: Sequence[int]) -> dict[int, list[str]]:
    """Register specs by unit: ``<spec>`` for every unit of ``units``, ``<units>:<spec>``
    (``2:40001=5``, ``1-3:1-16``) for those; a prefixed unit joins the line.

    >>> parse_unit_specs(["40001=0", "2:40001=5", "3:1-8"], (1, 2))
    {1: ['40001=0'], 2: ['40001=0', '40001=5'], 3: ['1-8']}
    """
    specs: dict[int, list[str]] = {unit: [] for unit in units}
    for text in texts:
        prefix, colon, spec = text.partition(":")
        for unit in (parse_units(prefix) if colon else units) or ():
            specs.setdefault(unit, []).append(spec if colon else text)
    return dict(sorted(specs.items()))


def parse_gateway(text: str) -> tuple[tuple[int, ...], str]:
    """``<units>@<port>`` -> (unit ids, port): a serial port path or ``host:port``."""
    units, at, port = text.rpartition("@")
    if not at or not units or not port:
        raise ValueError(f"bad --gateway {text!r}: expected <units>@<serial port or host:port>, "
                         "e.g. 1-3@/dev/ttyUSB0 or 7@10.0.0.5:502")
    return parse_units(units) or (), port


def add_line_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The serial line flags shared by modbus_sim and modbus_poll; returns their group."""
    group = parser.add_argument_group("Modbus/RTU serial line")
    group.add_argument("--serial", metavar="PORT", help="Modbus/RTU on this serial port")
    group.add_argument("--baud", default="19200", help="baud rate (default: 19200)")
    group.add_argument("--parity", default="E", help="N, E or O (default: E)")
    group.add_argument("--stopbits", default="1", help="1 or 2 (default: 1)")
    group.add_argument("--rtu-tcp", action="store_true",
                       help="RTU framing on the TCP address -a instead of Modbus/TCP (MBAP)")
    return group


def line_settings(args: argparse.Namespace, timing: bool = False) -> object:
    """The checked LineSettings of the flags; ValueError naming a bad one."""
    from cpppo.modbus.serial_line import LineSettings

    if args.serial is not None and args.rtu_tcp:
        raise ValueError("--serial and --rtu-tcp exclude each other")
    return LineSettings.parse(args.baud, args.parity, args.stopbits, timing=timing)


def parse_endpoint(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``[<interface>][:<port>]`` -> (interface, port); interface '' means all."""
    host, sep, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        number = int(port) if sep and port else default_port
    except ValueError:
        raise ValueError(f"bad address {text!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad address {text!r}: port {number} is outside 0..65535")
    return host.strip("[]"), number


def parse_units(text: str | None) -> tuple[int, ...] | None:
    """``"1,2,5-7"`` -> (1, 2, 5, 6, 7); None -> None (answer every unit id)."""
    if text is None:
        return None
    units: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            units.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ValueError(f"bad unit ids {text!r}: expected e.g. 1 or 1,2,5-7") from None
    if not units or not all(0 <= u <= 255 for u in units):
        raise ValueError(f"bad unit ids {text!r}: each must be 0..255")
    return tuple(units)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modbus_sim",
        description="Simulate a Modbus/TCP PLC, Modbus/RTU devices on a line, or a gateway.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    parser.add_argument("-l", "--log", help="log to this file (rotated) instead of stderr")
    parser.add_argument("-a", "--address", default=f"0.0.0.0:{DEFAULT_PORT}",
                        help=f"[<interface>][:<port>] to listen on (default: 0.0.0.0:{DEFAULT_PORT})")
    parser.add_argument("-u", "--unit", default=None,
                        help="unit id(s) to answer, e.g. 1 or 1,2,5-7 (default: any)")
    parser.add_argument("-d", "--delay", default=None,
                        help="delay every reply by #.# seconds, or a random #.#-#.# seconds")
    parser.add_argument("--max-connections", type=int, default=256,
                        help="concurrent connections; one more evicts the longest idle (default: 256)")
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="close connections idle this many seconds, 0: never (default: 600)")
    parser.add_argument("--max-in-flight", type=int, default=1000,
                        help="delayed replies a connection may have waiting before its requests wait "
                             "(default: 1000)")
    parser.add_argument("--index", type=int, default=0, metavar="N",
                        help="the device's number n, which behaviour parameters may use (default 0)")
    parser.add_argument("--retain", default=None, metavar="FILE",
                        help="keep client writes in this journal; they survive a restart (or SIGKILL)")
    line = add_line_arguments(parser)
    line.add_argument("--link", metavar="PATH",
                      help="--serial pty: also name the pseudo-terminal by this symbolic link")
    line.add_argument("--timing", action="store_true",
                      help="keep the serial line's timing at --baud (default: reply at once)")
    gateway = parser.add_argument_group("Modbus/TCP to RTU gateway")
    gateway.add_argument("--gateway", action="append", default=[], metavar="UNITS@PORT",
                         help="be a Modbus/TCP gateway to these RTU units on this serial port or "
                              "host:port (repeatable)")
    gateway.add_argument("--rtu-timeout", type=float, default=1.0,
                         help="seconds to wait for an RTU unit's reply (default: 1.0)")
    parser.add_argument("registers", nargs="*",
                        help="[<units>:]<begin>[-<end>][:<type>[:hi|lo]][=<value>[,<value>...]][~<behaviour>]")
    return parser


async def _start(args: argparse.Namespace, device: object, host: str, port: int, delay: object,
                 settings: object, line: object) -> tuple[object, str]:
    """The running server and the line that says so."""
    from cpppo.modbus import server as tcp

    pid = os.getpid()
    if args.serial is not None:
        from cpppo.modbus.rtu_server import serve_serial

        server = await serve_serial(device, args.serial, line, link=args.link)
        return server, (f"Success; Started Modbus/RTU Simulator; PID = {pid}; serial = {server.path} "
                        f"({line.describe()}); units = {_units(device.devices)}")
    if args.rtu_tcp:
        from cpppo.modbus.rtu_server import serve_rtu_tcp

        server = await serve_rtu_tcp(device, host or "0.0.0.0", port, delay=delay, settings=settings)
        return server, (f"Success; Started Modbus/RTU-over-TCP Simulator; PID = {pid}; "
                        f"address = {host}:{server.port}; units = {_units(device.devices)}")
    server = await tcp.serve(device, host or "0.0.0.0", port, delay=delay, settings=settings)
    if args.gateway:
        return server, (f"Success; Started Modbus/TCP gateway; PID = {pid}; address = {host}:{server.port}; "
                        f"routes = {' '.join(args.gateway)}")
    return server, f"Success; Started Modbus/TCP Simulator; PID = {pid}; address = {host}:{server.port}"


def _units(units: object) -> str:
    return ",".join(map(str, units))


async def _gateway(args: argparse.Namespace, line: object) -> object:
    from cpppo.modbus.gateway import ModbusGateway
    from cpppo.modbus.rtu_client import AsyncRtuClient

    lines = []
    for units, target in (parse_gateway(text) for text in args.gateway):
        if ":" in target and not target.startswith("/"):
            master_host, master_port = parse_endpoint(target)
            master = AsyncRtuClient.tcp(master_host or "localhost", master_port, timeout=args.rtu_timeout)
        else:
            master = AsyncRtuClient.serial(target, line, timeout=args.rtu_timeout)
        lines.append((units, master))
    return ModbusGateway.of_lines(lines)


async def _run(args: argparse.Namespace, device: object, host: str, port: int, delay: object,
               settings: object, line: object) -> int:
    from cpppo.server.hosting import bind_error_text

    try:
        if args.gateway:
            device = await _gateway(args, line)
        server, success = await _start(args, device, host, port, delay, settings, line)
    except OSError as exc:
        print(f"modbus_sim: cannot listen on {args.address}: {bind_error_text(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:                       # a serial port that cannot be opened
        print(f"modbus_sim: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(success, flush=True)
    await stop.wait()
    logging.getLogger("modbus_sim").info("stopping")
    server.close()
    await server.wait_closed()
    counters = getattr(server, "counters", None)
    if counters is not None:
        units = server.device if args.rtu_tcp else server.units
        logging.getLogger("modbus_sim").info("line: %s; not ours: %d; broadcasts: %d", counters,
                                             units.not_ours, units.broadcasts)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `modbus_sim`."""
    args = _parser().parse_args(argv)
    cpppo_log.configure(args.verbose + 1, args.log)
    from cpppo.modbus.server import ServerSettings
    from cpppo.server.hosting import ensure_fd_limit, parse_delay

    try:
        host, port = parse_endpoint(args.address)
        line = line_settings(args, timing=args.timing)
        device = _device(args)
        delay = parse_delay(args.delay)
        for flag, value, least in (("--max-connections", args.max_connections, 1),
                                   ("--max-in-flight", args.max_in_flight, 1),
                                   ("--idle-timeout", args.idle_timeout, 0)):
            if value < least:
                raise ValueError(f"{flag} must be >= {least}, got {value:g}")
        settings = ServerSettings(max_connections=args.max_connections,
                                  idle_timeout=args.idle_timeout or None, max_in_flight=args.max_in_flight)
        ensure_fd_limit(args.max_connections + 64)
    except (ValueError, OSError) as exc:
        print(f"modbus_sim: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_run(args, device, host, port, delay, settings, line))


def _device(args: argparse.Namespace) -> object:
    """The simulated device(s) of the flags; ValueError for a bad combination or spec."""
    from cpppo.modbus.device import ModbusDevice
    from cpppo.modbus.rtu_server import RtuUnits

    rtu = args.serial is not None or args.rtu_tcp
    if args.link and args.serial != "pty":
        raise ValueError("--link names a pseudo-terminal: it needs --serial pty")
    if args.timing and args.serial is None:
        raise ValueError("--timing keeps a serial line's timing: it needs --serial")
    for text in args.gateway:
        parse_gateway(text)
    if args.gateway:
        if rtu or args.registers:
            raise ValueError("--gateway forwards to RTU lines: it takes no --serial, --rtu-tcp or registers")
        return None
    if not args.registers:
        raise ValueError("no register ranges given (e.g. 40001-40100=99)")
    if not rtu:  # a ':' after the register is the value type (30001-30002:float32); before it, units
        if any(re.match(r"\s*[0-9][0-9,\s-]*:\s*[0-9]", text) for text in args.registers):
            raise ValueError("<units>:<spec> register specs are for RTU lines (--serial, --rtu-tcp)")
        return ModbusDevice.from_specs(args.registers, unit_ids=parse_units(args.unit), n=args.index,
                                       retain=args.retain)
    specs = parse_unit_specs(args.registers, parse_units(args.unit or "1") or (1,))
    units = RtuUnits.from_specs(specs)
    empty = [unit for unit, texts in specs.items() if not texts]
    if empty:
        raise ValueError(f"unit {empty[0]} has no registers")
    return units


if __name__ == "__main__":
    raise SystemExit(main())
