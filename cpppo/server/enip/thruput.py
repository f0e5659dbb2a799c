"""``python -m cpppo.server.enip.thruput``: measure Tag I/O transactions per second with a
pipeline ``--depth`` and Multiple Service Packets of up to ``--multiple`` bytes (spec 2.1.5)::

    python -m cpppo.server.enip.thruput -a <hostname> Volume Temperature --repeat 25 --depth 20 --multiple 250
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import cpppo
from cpppo.enip.cli.client import positive_seconds, unreachable
from cpppo.enip.client.connection import parse_address
from cpppo.server.enip import client

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="thruput", description="EtherNet/IP Tag I/O thruput")
    ap.add_argument("-d", "--depth", type=int, default=0, help="Pipelining depth")
    ap.add_argument("-m", "--multiple", type=int, default=0, help="Multiple Service Packet size limit")
    ap.add_argument("-r", "--repeat", type=int, default=1, help="Repeat requests this many times")
    ap.add_argument("-a", "--address", default="localhost", help="Hostname[:port] of target Controller")
    ap.add_argument("-t", "--timeout", type=positive_seconds, default=None,
                    help="I/O timeout seconds (default: None)")
    ap.add_argument("-q", "--quiet", action="store_true", help="Print only the summary")
    ap.add_argument("tags", nargs="+", help="Tags to read/write")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.depth < 0 or args.multiple < 0:
        ap.error("--repeat must be >= 1, --depth and --multiple >= 0")
    try:
        host, port = parse_address(args.address)
        operations = list(client.parse_operations(args.tags * args.repeat))
        with client.connector(host=host, port=port, timeout=args.timeout) as conn:
            start = cpppo.timer()
            count, failed = 0, 0
            for idx, _dsc, _op, _rpy, _sts, val in conn.pipeline(
                    operations=operations, depth=max(1, args.depth), multiple=args.multiple,
                    timeout=args.timeout):
                count += 1
                failed += val is None
                if not args.quiet:
                    print(f"{cpppo.wall():.3f}: {idx:3d}: {val}")
            elapsed = cpppo.timer() - start
    except OSError as exc:
        print(f"thruput: {unreachable(args.address, exc)}", file=sys.stderr)
        return 1
    except (client.ENIPError, client.OperationError, ValueError) as exc:
        print(f"thruput: {exc}", file=sys.stderr)
        return 1
    print(f"{count:3d} operations using {conn.requests_sent:3d} requests in {elapsed:7.2f}s at pipeline "
          f"depth {args.depth:2d}; {count / elapsed if elapsed else 0.0:7.1f} TPS")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
