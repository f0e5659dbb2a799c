"""An iterator you can look ahead into and push symbols back onto.

    >>> source = peekable("abc")
    >>> source.peek(), next(source), source.sent
    ('a', 'a', 1)
    >>> source.push("a"); "".join(source)
    'abc'

``.sent`` counts the symbols delivered so far (pushing one back decrements it), which is
how the state machines report their position in the input.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["peekable"]

T = TypeVar("T")
_NOTHING: Any = object()


class peekable(Generic[T]):  # noqa: N801 - the spec's public name
    """Wrap any iterable; ``peek()`` returns the next symbol (or None at the end) without
    consuming it, and ``push(x)`` puts a symbol back in front of the input."""

    __slots__ = ("_back", "_iter", "sent")

    def __init__(self, iterable: Iterable[T] = ()) -> None:
        self._iter: Iterator[T] = iter(iterable)
        self._back: deque[T] = deque()
        self.sent = 0

    def __iter__(self) -> peekable[T]:
        return self

    def __next__(self) -> T:
        value = self._back.popleft() if self._back else next(self._iter)
        self.sent += 1
        return value

    def peek(self, default: Any = None) -> T | Any:
        """The next symbol without consuming it; ``default`` when the input is exhausted."""
        if not self._back:
            value = next(self._iter, _NOTHING)
            if value is _NOTHING:
                return default
            self._back.append(value)
        return self._back[0]

    def push(self, item: T) -> None:
        """Put ``item`` back in front of the input; it is the next symbol delivered."""
        self._back.appendleft(item)
        self.sent -= 1

    def chain(self, iterable: Iterable[T]) -> None:
        """Append more input after whatever remains."""
        rest = list(self._back)
        self._back.clear()
        self._iter = itertools.chain(rest, self._iter, iterable)
