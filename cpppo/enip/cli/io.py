"""``enip_client --io``: a Class 1 scanner on the command line.

    enip_client -a 127.60.0.1 --io 100:8,150:4 --rpi 10 --output 2a000000 --io-count 5

opens an exclusive-owner connection consuming input assembly 100 (8 bytes) and producing
output assembly 150 (4 bytes) every 10 ms, prints one line per input packet (encapsulation
sequence, CIP sequence count, data in hex) and closes after 5 of them (or --io-seconds, or
Ctrl-C) with a Forward Close.  ``--io 100:8,198`` is an input-only connection (heartbeat
point 198), ``--io-kind listen-only`` a listen-only one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from cpppo.enip.client.connection import parse_address
from cpppo.enip.client.scanner import ForwardOpenError, Scanner

__all__ = ["add_io", "parse_io", "run_io"]


def add_io(ap: argparse.ArgumentParser) -> None:
    group = ap.add_argument_group("implicit I/O (Class 1 scanner)")
    group.add_argument("--io", metavar="<in>:<bytes>[,<out>[:<bytes>][,<config>]]",
                       help="open a Class 1 connection: input assembly and size, output (or heartbeat) "
                            "assembly and size, configuration instance")
    group.add_argument("--rpi", type=float, default=10.0, help="requested packet interval, ms (default 10)")
    group.add_argument("--output", default="", help="output data in hex (default: zeros)")
    group.add_argument("--io-kind", choices=("owner", "input-only", "listen-only"), default=None,
                       help="connection kind (default: owner, or input-only when the output size is 0)")
    group.add_argument("--io-port", type=int, default=2222,
                       help="local UDP port for the inputs (default 2222; 0: any free, named in the "
                            "Forward Open)")
    group.add_argument("--io-count", type=int, default=0,
                       help="close after this many input packets (0: no limit)")
    group.add_argument("--io-seconds", type=float, default=0.0,
                       help="close after this many seconds (0: no limit)")


def parse_io(text: str) -> tuple[tuple[int, int], tuple[int, int], int | None]:
    """``<in>:<bytes>[,<out>[:<bytes>][,<config>]]`` -> (inputs, outputs, config) (raises ValueError).

    >>> parse_io("100:8,150:4,151")
    ((100, 8), (150, 4), 151)
    """
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise ValueError(f"bad --io {text!r}: expected <in>:<bytes>[,<out>[:<bytes>][,<config>]]")
    try:
        numbers = []
        for part in parts[:2]:
            instance, _, size = part.partition(":")
            numbers.append((int(instance, 0), int(size, 0) if size else 0))
        config = int(parts[2], 0) if len(parts) == 3 else None
    except ValueError:
        raise ValueError(f"bad --io {text!r}: instances and sizes must be numbers") from None
    inputs = numbers[0]
    outputs = numbers[1] if len(numbers) > 1 else (198, 0)
    for instance, size in (inputs, outputs):
        if not 1 <= instance <= 0xFFFF or not 0 <= size <= 0xFFFF:
            raise ValueError(f"bad --io {text!r}: instances are 1-65535, sizes 0-65535")
    return inputs, outputs, config


def run_io(args: argparse.Namespace) -> int:
    """Run the scanner the flags describe; print inputs; 0 on a clean close, 1 on a refusal or
    timeout (one line on stderr)."""
    inputs, outputs, config = parse_io(args.io)
    host, port = parse_address(args.address.split(",")[0])
    try:
        output = bytes.fromhex(args.output)
    except ValueError:
        raise ValueError(f"bad --output {args.output!r}: not hex") from None
    kind = args.io_kind or ("owner" if outputs[1] else "input-only")
    if kind == "owner" and len(output) not in (0, outputs[1]):
        raise ValueError(f"--output has {len(output)} bytes; output assembly {outputs[0]} takes {outputs[1]}")
    if not 0 < args.rpi <= 10_000:
        raise ValueError(f"--rpi {args.rpi:g} ms is outside 0-10000")

    async def scan() -> str:
        scanner = Scanner(host, port, inputs=inputs, outputs=outputs,
                          config=(config, b"") if config is not None else None, rpi=args.rpi / 1000,
                          kind=kind, io_address=("0.0.0.0", args.io_port), timeout=args.timeout)
        await scanner.open()
        if output:
            scanner.output = output
        end = time.monotonic() + args.io_seconds if args.io_seconds > 0 else None
        count = 0
        try:
            iterator = scanner.__aiter__()
            while True:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                try:
                    packet = await asyncio.wait_for(iterator.__anext__(), left)
                except (TimeoutError, StopAsyncIteration):
                    break
                print(f"{packet.sequence:10d} {packet.count:5d} {packet.data.hex()}", flush=True)
                count += 1
                if args.io_count and count >= args.io_count:
                    break
        finally:
            with contextlib.suppress(Exception):
                await scanner.close()
        return scanner.error

    try:
        error = asyncio.run(scan())
    except ForwardOpenError as exc:
        print(f"{args.prog if hasattr(args, 'prog') else 'enip_client'}: {exc}", file=sys.stderr)
        return 1
    if error:
        print(f"enip_client: {error}", file=sys.stderr)
        return 1
    return 0
