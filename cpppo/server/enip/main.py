"""``cpppo.server.enip.main``, the spec's path: the ``enip_server`` command,
from :mod:`cpppo.enip.cli.server`."""

from cpppo.enip.cli.server import *  # noqa: F403
from cpppo.enip.cli.server import __all__ as _all
from cpppo.enip.cli.server import main

__all__ = list(_all)

if __name__ == "__main__":
    raise SystemExit(main())
