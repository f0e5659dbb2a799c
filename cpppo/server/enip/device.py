"""``cpppo.server.enip.device``, the spec's path: re-exports :mod:`cpppo.enip.device.model`."""

from cpppo.enip.device.model import *  # noqa: F403
from cpppo.enip.device.model import __all__ as _all

__all__ = list(_all)
