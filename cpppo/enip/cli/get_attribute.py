"""``enip_get_attribute`` / ``python -m cpppo.enip.client.proxy``: Get Attributes All,
Get/Set Attribute Single with the options of ``enip_client``::

    $ python -m cpppo.enip.client.proxy '@22/1/3=(REAL)1.0' '@22/1/3'
    Mon Feb 22 15:29:51 2016:   0: Single S_A_S      @0x0016/1/3 == True
    Mon Feb 22 15:29:51 2016:   1: Single G_A_S      @0x0016/1/3 == [0, 0, 128, 63]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from cpppo.enip.cli.client import add_common, connection_kwds, dispatch
from cpppo.enip.client import connector as client
from cpppo.enip.client.operations import format_path
from cpppo.enip.client.proxy import attribute_operations

__all__ = ["run"]


def run(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="enip_get_attribute", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Get/Set Attribute Single and Get Attributes All on an EtherNet/IP CIP device.",
        epilog="Attributes: @1/1 (Get Attributes All) @1/1/7 (Get Attribute Single) "
               "'@22/1/3=(REAL)1.0' (Set Attribute Single, converted to USINTs)")
    add_common(ap)
    ap.add_argument("attributes", nargs="*", help="Attributes to get/set, eg. @1/1/7")
    return dispatch(ap, argv, items="attributes", io=attribute_io)


def attribute_io(args: argparse.Namespace) -> int:
    kwds = connection_kwds(args)
    operations = list(attribute_operations(args.attributes * max(1, args.repeat)))
    failures = 0
    with client.connector(host=kwds["host"], port=kwds["port"], timeout=args.timeout) as conn:
        for idx, dsc, op, _rpy, sts, val in conn.pipeline(
                operations=operations, depth=max(1, args.depth), multiple=args.multiple,
                timeout=args.timeout, route_path=kwds["route_path"], send_path=kwds["send_path"]):
            if val is None:
                failures += 1
            shown = val if val is not None else f"None ({client.status_text(sts)})"
            print(f"{time.ctime()}: {idx:3d}: {dsc:<17} {format_path(op['path'])} == {shown}", flush=True)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``enip_get_attribute``."""
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
