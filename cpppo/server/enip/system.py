"""Process-level set-up for servers hosting many devices: the file-descriptor limit and
the uvloop event loop policy."""

from __future__ import annotations

import logging
import resource

__all__ = ["ensure_fd_limit", "install_uvloop"]

log = logging.getLogger(__name__)


def ensure_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to at least ``needed`` (up to the hard limit).

    Returns the new soft limit; raises OSError with a clear message when the hard limit is
    too low (raise it with ``ulimit -Hn`` or /etc/security/limits.conf)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OSError(f"need {needed} file descriptors but the system limit (ulimit -Hn) is {hard}; "
                      "raise it (ulimit -n, /etc/security/limits.conf, or the container's nofile limit)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    log.info("raised the open-file limit from %d to %d", soft, needed)
    return needed


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when uvloop is installed; True if it is in use."""
    try:
        import uvloop
    except ImportError:
        return False
    import asyncio
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
