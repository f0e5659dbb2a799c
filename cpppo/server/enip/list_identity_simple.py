"""Send one UDP/IP List Identity and print every reply until none arrives within the timeout
(spec 2.1.5, section 9)::

    python -m cpppo.server.enip.list_identity_simple [<host>[:<port>] [<timeout>]]

The host defaults to the broadcast address 255.255.255.255, so every EtherNet/IP CIP device on
the local LAN that answers broadcasts replies; each reply is printed with ``enip_format``.  The
timeout (default 1.0 s) is per reply: the listing ends when the devices fall silent.  Exit
status 0 if any device answered, 1 if none did.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cpppo.server import enip
from cpppo.server.enip import client

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        host, port = client.parse_address(args[0] if args else "255.255.255.255")
        timeout = float(args[1]) if len(args) > 1 else 1.0
        answered = 0
        with client.client(host=host, port=port, udp=True, broadcast=True) as conn:
            conn.list_identity(timeout=timeout)
            while True:
                response, _elapsed = client.await_response(conn, timeout=timeout)
                if not response:
                    break  # None: nothing within the timeout; {}: end of stream
                print(enip.enip_format(response), flush=True)
                answered += 1
    except (client.ENIPError, ValueError, OSError) as exc:
        print(f"list_identity_simple: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    if not answered:
        print(f"list_identity_simple: no response within {timeout}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
