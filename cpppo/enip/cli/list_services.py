"""``enip_list_services`` / ``python -m cpppo.enip.cli.list_services``: List Services (by
default), List Identity and List Interfaces on an EtherNet/IP CIP server, over TCP/IP or
UDP/IP (optionally broadcast, gathering every reply until the timeout).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cpppo.enip.cli.client import add_connection, gather, unreachable
from cpppo.enip.client.wire import ENIPError
from cpppo.log import configure

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``enip_list_services``."""
    ap = argparse.ArgumentParser(prog="enip_list_services",
                                 description="List Services (by default) on an EtherNet/IP CIP Server.")
    add_connection(ap)
    ap.add_argument("-i", "--list-identity", "--identity", dest="identity", action="store_true",
                    help="List Identity (default: False)")
    ap.add_argument("-I", "--list-interfaces", "--interfaces", dest="interfaces", action="store_true",
                    help="List Interfaces (default: False)")
    args = ap.parse_args(argv)
    configure(args.verbose)
    requests = [("List Services", "list_services")]
    if args.identity:
        requests.append(("List Identity", "list_identity"))
    if args.interfaces:
        requests.append(("List Interfaces", "list_interfaces"))
    try:
        return gather(args, requests)
    except OSError as exc:
        print(f"enip_list_services: {unreachable(args.address, exc)}", file=sys.stderr)
        return 1
    except (ENIPError, ValueError) as exc:
        print(f"enip_list_services: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
