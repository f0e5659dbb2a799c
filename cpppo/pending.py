"""Reserved command names whose implementation has not landed yet.

Each console script the spec names exists from the start so that the names are reserved and
tested; until its issue lands, its entry point calls :func:`not_built`, which says so on stderr
and exits with status 2.
"""

from __future__ import annotations

import sys

__all__ = ["not_built"]


def not_built(command: str, issue: int) -> int:
    """Tell the user ``command`` is not built yet (tracked as ``issue``); return exit code 2."""
    print(f"{command}: not built yet (see issue #{issue})", file=sys.stderr)
    return 2
