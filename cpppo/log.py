"""Logging set-up shared by every cpppo command.

Two levels beyond the standard ones, as upstream cpppo has them: ``NORMAL`` (between INFO and
WARNING) for the one line a command prints about what it is doing, and ``DETAIL`` (between
DEBUG and INFO) for per-request tracing.  They are also set on the ``logging`` module
(``logging.NORMAL``, ``logging.DETAIL``) so the spec's ``cpppo.log_cfg['level'] =
logging.DETAIL`` works.

``log_cfg`` is a dict for ``logging.basicConfig(**cpppo.log_cfg)``.  ``verbosity(n)`` maps the
count of ``-v`` flags to a level; ``configure(verbose, log_file)`` is what the CLIs call (a log
file that cannot be opened ends the command with one line on stderr and exit status 2).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Any

__all__ = ["DETAIL", "NORMAL", "configure", "log_cfg", "verbosity"]

NORMAL = logging.INFO + 5
DETAIL = logging.DEBUG + 5
logging.addLevelName(NORMAL, "NORMAL")
logging.addLevelName(DETAIL, "DETAIL")
logging.NORMAL = NORMAL  # type: ignore[attr-defined]
logging.DETAIL = DETAIL  # type: ignore[attr-defined]

log_cfg: dict[str, Any] = {
    "level": logging.WARNING,
    "datefmt": "%m-%d %H:%M:%S",
    "format": "%(asctime)s.%(msecs).03d %(name)-12.12s %(levelname)-8.8s %(message)s",
}

_LEVELS = (logging.WARNING, NORMAL, logging.INFO, DETAIL, logging.DEBUG)


def verbosity(count: int) -> int:
    """The log level for ``count`` repetitions of ``-v`` (0: WARNING ... 4+: DEBUG)."""
    return _LEVELS[max(0, min(count, len(_LEVELS) - 1))]


def configure(verbose: int = 0, log_file: str | None = None, *, max_bytes: int = 10 * 2**20,
              backups: int = 5) -> None:
    """Configure the root logger for a command: level from ``-v`` count; to a rotating
    ``log_file`` (10 MB x 5 by default) when given, else to stderr."""
    cfg = dict(log_cfg, level=verbosity(verbose), force=True)
    if log_file:
        try:
            handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=max_bytes, backupCount=backups)
        except OSError as exc:  # a user error (bad -l/--log): one line and exit 2, as for a bad flag
            print(f"{_program()}: cannot write log file {log_file!r}: {exc.strerror or exc}", file=sys.stderr)
            raise SystemExit(2) from None
        cfg["handlers"] = [handler]
    else:
        cfg["handlers"] = [_StderrHandler()]
    logging.basicConfig(**cfg)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a record is emitted, not to the
    stream that was stderr when the command started: a command run in-process (a test's
    runner, an embedding program) that swaps stderr and closes it afterwards does not leave
    the root logger writing to a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _program() -> str:
    """The running command's name: the console script, or the module run with ``python -m``."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "cpppo"
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if prog.endswith(".py") and spec is not None:
        prog = spec.name.removesuffix(".__main__")
    return prog
