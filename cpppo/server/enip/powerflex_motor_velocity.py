"""Write a Motor Velocity to an A-B PowerFlex AC drive (spec 2.1.6, "Writing Attributes")::

    python -m cpppo.server.enip.powerflex_motor_velocity [@<host>[:<port>]] [<velocity>]

The host defaults to localhost and the velocity to 0.  Prints the time, the parameter written
and the result; a failure ends in one line on stderr and exit status 1.  To start a simulated
(partial) PowerFlex on localhost to write to: ``python -m cpppo.server.enip.poll_test``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

import cpppo
from cpppo.enip.client.connection import parse_address
from cpppo.server.enip.ab import powerflex_750_series as device

__all__ = ["main"]

log = logging.getLogger("enip.powerflex")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(**cpppo.log_cfg)
    address = "localhost"
    if args and args[0].startswith("@"):
        address = args.pop(0)[1:]
    try:
        host, port = parse_address(address)
        velocity = float(args.pop(0)) if args else 0.0
    except ValueError as exc:
        print(f"powerflex_motor_velocity: {exc}", file=sys.stderr)
        return 1
    param = f"Motor Velocity = (REAL){velocity}"
    via = device(host=host, port=port, timeout=5.0)
    try:
        with via:  # opens the gateway; any exception closes it
            (val,) = via.write(via.parameter_substitution(param), checking=True)
        print(f"{time.ctime()}: {param:<32} == {val}", flush=True)
    except Exception as exc:
        log.log(cpppo.DETAIL, "Exception writing Parameter %s", param, exc_info=True)
        print(f"powerflex_motor_velocity: writing {param!r} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        via.close_gateway()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
