"""`modbus_sim`: a simulated Modbus/TCP PLC serving the given register ranges.

    modbus_sim -a :1502 40001-40100=99

Also runnable as ``python -m cpppo.bin.modbus_sim``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from cpppo import log as cpppo_log
from cpppo.server.hosting import new_event_loop

__all__ = ["main", "parse_endpoint", "parse_units"]

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

example:
  modbus_sim -a :1502 40001-40100=99 1-16=0 30001-30010=5
  modbus_sim -a :1502 1=0 '30001-30002:float32~expr(r1 * 120 + noise(2))' \
             '30003~counter(rate=1)' '30004~sine(amplitude=100, period=60, offset=500)'
"""


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
        prog="modbus_sim", description="Simulate a Modbus/TCP PLC.", epilog=EPILOG,
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
    parser.add_argument("registers", nargs="+",
                        help="<begin>[-<end>][:<type>[:hi|lo]][=<value>[,<value>...]][~<behaviour>]")
    return parser


async def _run(device: object, host: str, port: int, delay: object, settings: object,
               shown: str) -> int:
    from cpppo.modbus.server import serve
    from cpppo.server.hosting import bind_error_text

    try:
        server = await serve(device, host or "0.0.0.0", port, delay=delay, settings=settings)
    except OSError as exc:
        print(f"modbus_sim: cannot listen on {shown}: {bind_error_text(exc)}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"Success; Started Modbus/TCP Simulator; PID = {os.getpid()}; address = {host}:{server.port}",
          flush=True)
    await stop.wait()
    logging.getLogger("modbus_sim").info("stopping")
    server.close()
    await server.wait_closed()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `modbus_sim`."""
    args = _parser().parse_args(argv)
    cpppo_log.configure(args.verbose + 1, args.log)
    from cpppo.modbus.device import ModbusDevice
    from cpppo.modbus.server import ServerSettings
    from cpppo.server.hosting import ensure_fd_limit, parse_delay

    try:
        host, port = parse_endpoint(args.address)
        device = ModbusDevice.from_specs(args.registers, unit_ids=parse_units(args.unit), n=args.index,
                                         retain=args.retain)
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
        return runner.run(_run(device, host, port, delay, settings, args.address))


if __name__ == "__main__":
    raise SystemExit(main())
