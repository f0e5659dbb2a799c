"""``cpppo.server.enip.get_attribute``, the spec's path: re-exports
:mod:`cpppo.enip.client.proxy` and the command in :mod:`cpppo.enip.cli.get_attribute`."""

from cpppo.enip.cli.get_attribute import main
from cpppo.enip.client.proxy import *  # noqa: F403
from cpppo.enip.client.proxy import __all__ as _all

__all__ = [*_all, "main"]

if __name__ == "__main__":
    raise SystemExit(main())
