"""``regex``: a dfa built from a regular expression with greenery (4.x).

greenery turns the expression into a minimal ``Fsm`` whose alphabet is a partition of all
characters into ``Charclass`` es (one of them negated: "every other character").  We turn each
live fsm state into a ``state_input`` (each consumes and keeps one symbol) and drop the dead
ones (states from which no accepting state can be reached), so a symbol that cannot be part
of an accepted sentence takes no edge and stops the machine.  The initial state is entered
before any symbol is consumed, so it is a plain ``state`` carrying the same edges.

    >>> from cpppo.dotdict import dotdict
    >>> machine, data = regex(initial="(ab+)((,[ ]*)(ab+))*", terminal=True), dotdict()
    >>> with machine:
    ...     steps = list(machine.run(source="abbb, ab;x", data=data))
    >>> "".join(data["input"]), machine.terminal
    ('abbb, ab', True)

Symbols are ``str`` characters; anything Unicode is fine (``regex('é+')`` takes ``'éé'``).
``regex_bytes`` takes the same expressions over bytes (``int`` symbols), matching each
character as its UTF-8 encoding.

Greedy is "keep consuming while a sentence is still possible", as the spec says, with no
backing up: ``'ab,'`` run through ``(ab+)((,[ ]*)(ab+))*`` consumes all three symbols and ends
non-terminal, because the ``','`` could have begun a longer sentence.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from cpppo.automata.dfa import dfa
from cpppo.automata.states import state, state_input

if TYPE_CHECKING:
    import greenery

__all__ = ["RegexError", "byte_states_from_fsm", "compile_fsm", "regex", "regex_bytes",
           "states_from_fsm"]

# A character class with more characters than this becomes a range test, not a table entry.
EXPAND_LIMIT = 1024


class RegexError(ValueError):
    """A regular expression greenery cannot parse (the message names the expression)."""


def compile_fsm(expression: Any) -> tuple[str, greenery.Fsm]:
    """``(text, fsm)`` for a regular expression given as text, a greenery pattern or an Fsm."""
    import greenery  # imported here: only machines built from expressions need it

    if isinstance(expression, greenery.Fsm):
        return "Fsm", expression  # (its str() is a whole table: no name for a machine)
    try:
        pattern = greenery.parse(expression) if isinstance(expression, str) else expression
        return str(expression), pattern.to_fsm().reduce()
    except Exception as exc:  # greenery raises NoMatch, ValueError, IndexError, ...
        detail = str(exc) or type(exc).__name__
        raise RegexError(f"cannot parse regular expression {expression!r}: {detail}") from None


class _InRanges:
    """A transition test: is the symbol a character within these code point ranges?"""

    __slots__ = ("ranges",)

    def __init__(self, ranges: tuple[tuple[int, int], ...]) -> None:
        self.ranges = ranges

    def __call__(self, symbol: Any) -> bool:
        if not isinstance(symbol, str) or len(symbol) != 1:
            return False
        code = ord(symbol)
        return any(lo <= code <= hi for lo, hi in self.ranges)

    def __repr__(self) -> str:
        return "[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in self.ranges) + "]"


def _live_states(fsm: greenery.Fsm) -> set[int]:
    """The fsm states from which some final state can be reached."""
    back: dict[int, set[int]] = {}
    for pre, row in fsm.map.items():
        for nxt in row.values():
            back.setdefault(nxt, set()).add(pre)
    live, todo = set(fsm.finals), list(fsm.finals)
    while todo:
        for pre in back.get(todo.pop(), ()):
            if pre not in live:
                live.add(pre)
                todo.append(pre)
    return live


def _link(node: state, charclass: Any, target: state | None) -> None:
    """Add ``node``'s edge(s) for every character of ``charclass``."""
    if charclass.negated:
        node[True] = target
    elif charclass.num_chars() <= EXPAND_LIMIT:
        node[frozenset(charclass.get_chars())] = target
    else:
        node[_InRanges(tuple(charclass.ord_ranges))] = target


def states_from_fsm(fsm: greenery.Fsm, **kwds: Any) -> state:
    """The initial state of a graph of ``state_input`` s equivalent to ``fsm``; ``kwds`` go
    to every ``state_input`` (e.g. ``context``, ``typecode``)."""
    live = _live_states(fsm)
    nodes = {s: state_input(str(s), terminal=s in fsm.finals, **kwds) for s in sorted(live)}
    entry = state(f"{fsm.initial}'", terminal=fsm.initial in fsm.finals)
    for pre in sorted(live):
        row = fsm.map[pre]
        has_any = any(cc.negated and row[cc] in live for cc in row)
        sources = (nodes[pre], entry) if pre == fsm.initial else (nodes[pre],)
        for charclass, nxt in row.items():
            if nxt in live:
                target = nodes[nxt]
            elif has_any and not charclass.negated:
                target = None  # refuse these explicitly, or the "any" edge would take them
            else:
                continue
            for node in sources:
                _link(node, charclass, target)
    return entry  # without edges if the expression matches nothing at all


# --- UTF-8 bytes -------------------------------------------------------------------------
_MIXED: Any = object()  # a block of characters that leads to more than one target
_BLOCK = ((0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF))  # by encoded length


def _utf8_length(lead: int) -> int:
    """How many bytes a character starting with ``lead`` has (0: not a leading byte)."""
    return 1 if lead < 0x80 else 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 \
        else 4 if 0xF0 <= lead < 0xF8 else 0


def _decode(encoded: bytes) -> int:
    if len(encoded) == 1:
        return encoded[0]
    code = encoded[0] & (0x7F >> len(encoded))
    for byte in encoded[1:]:
        code = (code << 6) | (byte & 0x3F)
    return code


def _block(prefix: bytes, length: int) -> tuple[int, int] | None:
    """The code points whose ``length``-byte encodings start with ``prefix`` (None if none:
    over-long forms and values past U+10FFFF are not UTF-8)."""
    fill = length - len(prefix)
    lo, hi = _decode(prefix + b"\x80" * fill), _decode(prefix + b"\xbf" * fill)
    floor, ceiling = _BLOCK[length - 1]
    lo, hi = max(lo, floor), min(hi, ceiling)
    return (lo, hi) if lo <= hi else None


class _Partition:
    """The code points of one fsm state's row, as sorted ``(first, last, target)`` segments."""

    def __init__(self, row: Any, nodes: dict[int, state]) -> None:
        segments = []
        for charclass, nxt in row.items():
            ranges = list(charclass.ord_ranges)
            if charclass.negated:  # everything between (and around) the listed ranges
                gaps, start = [], 0
                for lo, hi in sorted(ranges):
                    gaps.append((start, lo - 1))
                    start = hi + 1
                ranges = [(lo, hi) for lo, hi in [*gaps, (start, 0x10FFFF)] if lo <= hi]
            segments += [(lo, hi, nodes.get(nxt)) for lo, hi in ranges]
        segments.sort(key=lambda seg: seg[0])
        self.segments = segments
        self.firsts = [seg[0] for seg in segments]

    def target(self, lo: int, hi: int) -> Any:
        """The one target of every code point in ``lo..hi``, or _MIXED."""
        first, last, target = self.segments[bisect.bisect_right(self.firsts, lo) - 1]
        return target if first <= lo and hi <= last else _MIXED


def byte_states_from_fsm(fsm: greenery.Fsm, **kwds: Any) -> state:
    """Like ``states_from_fsm``, for symbols that are the bytes (ints) of UTF-8 text: each
    edge on a character class becomes edges on the UTF-8 byte sequences of its characters,
    through intermediate (non-terminal) ``state_input`` s that consume the following bytes."""
    live = _live_states(fsm)
    nodes = {s: state_input(str(s), terminal=s in fsm.finals, **kwds) for s in sorted(live)}
    entry = state(f"{fsm.initial}'", terminal=fsm.initial in fsm.finals)
    tails: dict[tuple[int, int], state] = {}  # (id(target), bytes left) -> state taking them

    def tail(target: state, left: int) -> state:
        if left == 0:
            return target
        node = tails.get((id(target), left))
        if node is None:
            node = tails[id(target), left] = state_input(f"{target.name}+{left}", **kwds)
            node[_CONTINUATION] = tail(target, left - 1)
        return node

    def spell(roots: tuple[state, ...], partition: _Partition, prefix: bytes, length: int,
              name: str) -> None:
        edges: dict[state, list[int]] = {}
        for byte in range(256) if not prefix else _CONTINUATION:
            size = length or _utf8_length(byte)
            block = _block(prefix + bytes((byte,)), size) if size else None
            if block is None:
                continue
            target = partition.target(*block)
            if target is _MIXED and len(prefix) + 1 == size:
                target = None  # (cannot happen: one code point has one target)
            elif target is _MIXED:  # characters of this block go different ways: a byte deeper
                inner = state_input(f"{name}~{(prefix + bytes((byte,))).hex()}", **kwds)
                spell((inner,), partition, prefix + bytes((byte,)), size, name)
                target = inner
            elif target is not None:
                target = tail(target, size - len(prefix) - 1)
            if target is not None:
                edges.setdefault(target, []).append(byte)
        for target, symbols in edges.items():
            for root in roots:
                root[symbols] = target

    for pre in sorted(live):
        roots = (nodes[pre], entry) if pre == fsm.initial else (nodes[pre],)
        spell(roots, _Partition(fsm.map[pre], nodes), b"", 0, str(pre))
    return entry


_CONTINUATION = range(0x80, 0xC0)


class regex(dfa):  # noqa: N801 - the spec's public name
    """``regex(name=None, initial=<expression>, context=None, terminal=False, greedy=True)``.

    The name defaults to the expression.  Symbols are kept at ``<context>.input``.  With
    ``terminal=True``, ``.terminal`` after a run tells whether the symbols consumed form a
    sentence of the expression.  ``greedy`` (default) consumes symbols for as long as they
    can still be part of a sentence; ``greedy=False`` stops at the first accepted sentence.
    A ``RegexError`` names an expression greenery cannot parse."""

    def __init__(self, name: str | None = None, initial: Any = None, typecode: str | None = None,
                 **kwds: Any) -> None:
        if initial is None:
            raise RegexError("regex needs a regular expression (initial=...)")
        text, fsm = compile_fsm(initial)
        self.expression = text
        self.fsm = fsm
        entry = self.build(fsm, typecode=typecode)
        super().__init__(name or text, initial=entry, **kwds)

    build = staticmethod(states_from_fsm)


class regex_bytes(regex):  # noqa: N801 - upstream's public name
    """A ``regex`` over bytes (``int`` symbols, as iterating ``bytes`` gives): the
    expression's characters are matched as their UTF-8 encodings, and the input is kept
    as an ``array('B')``."""

    build = staticmethod(byte_states_from_fsm)
