"""``cpppo.server.enip.client``, the spec's path: re-exports
:mod:`cpppo.enip.client.connector` and the command in :mod:`cpppo.enip.cli.client`."""

from cpppo.enip.cli.client import main
from cpppo.enip.client.connector import *  # noqa: F403
from cpppo.enip.client.connector import __all__ as _all

__all__ = [*_all, "main"]

if __name__ == "__main__":
    raise SystemExit(main())
