"""Name and identity patterns of fleet.toml (``"line{n:03}"``): ``str.format`` with ``n`` only,
checked before formatting so that a pattern can neither reach into ``n`` (``{n.real}``,
``{n[0]}``) nor ask for a huge field (``{n:099999999}``)."""

from __future__ import annotations

import functools
import re
import string

MAX_WIDTH = 64  # the widest field (or precision) a pattern may ask for
_NUMBER = re.compile(r"[0-9]+")


def format_pattern(pattern: str, n: int) -> str:
    """``pattern`` formatted with ``n``; ValueError saying what is wrong with the pattern.

    >>> format_pattern("line{n:03}", 7)
    'line007'
    >>> format_pattern("line{n.real}", 7)
    Traceback (most recent call last):
    ...
    ValueError: only {n} is available, not {n.real}
    """
    check_pattern(pattern)
    try:
        return pattern.format(n=n)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


@functools.lru_cache(maxsize=256)
def check_pattern(pattern: str) -> None:
    """ValueError saying what is wrong with ``pattern`` (checked once per pattern: a plan of
    100,000 devices formats the same few patterns over and over)."""
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        if field != "n":
            raise ValueError(f"only {{n}} is available, not {{{field}}}")
        if spec and ("{" in spec or any(int(w) > MAX_WIDTH for w in _NUMBER.findall(spec))):
            raise ValueError(f"format {spec!r}: nested fields or widths over {MAX_WIDTH} are not allowed")
        if conversion not in (None, "s", "r", "a"):
            raise ValueError(f"unknown conversion !{conversion}")
