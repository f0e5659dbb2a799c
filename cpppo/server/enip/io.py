"""``python -m cpppo.server.enip.io``: the spec's ``connector.process`` example (2.1.5)::

    python -m cpppo.server.enip Tag=DINT[10] &
    python -m cpppo.server.enip.io [<host>[:<port>] [<tag> ...]]

Writes and reads a few Tags (by default ``Tag[0-9]+16=(DINT)4,5,6,7,8,9``, ``@0x2/1/1`` and
``Tag[3-5]``) on a Controller at localhost:44818, printing a summary of each operation; the
exit status is 1 if any operation failed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cpppo.server.enip import client

__all__ = ["TAGS", "main"]

TAGS = ["Tag[0-9]+16=(DINT)4,5,6,7,8,9", "@0x2/1/1", "Tag[3-5]"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    depth = 1            # allow 1 transaction in flight
    multiple = 0         # don't use Multiple Service Packets
    fragment = False     # don't force Read/Write Tag Fragmented
    timeout = 1.0        # any PLC I/O fails if it takes > 1s
    printing = True      # print a summary of I/O
    try:
        host, port = client.parse_address(args[0] if args else "localhost")
        tags = args[1:] or TAGS
        with client.connector(host=host, port=port, timeout=timeout) as connection:
            operations = client.parse_operations(tags)
            failures, _transactions = connection.process(
                operations=operations, depth=depth, multiple=multiple, fragment=fragment,
                printing=printing, timeout=timeout)
    except (client.ENIPError, client.OperationError, ValueError, OSError) as exc:
        print(f"io: {exc}", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
