"""``cpppo.server.enip.poll``, the spec's path: re-exports
:mod:`cpppo.enip.client.poll` and the command in :mod:`cpppo.enip.cli.poll`."""

from cpppo.enip.cli.poll import main
from cpppo.enip.client.poll import *  # noqa: F403
from cpppo.enip.client.poll import __all__ as _all

__all__ = [*_all, "main"]

if __name__ == "__main__":
    raise SystemExit(main())
