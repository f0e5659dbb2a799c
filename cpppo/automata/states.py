"""The states of a state machine, and the transitions between them.

A state is a node of a graph; ``state[key] = target`` adds an outgoing edge.  The key says
which upcoming symbol takes the edge:

==========================  ===========================================================
key                         the edge is taken when the next symbol ...
==========================  ===========================================================
a symbol (``'a'``, ``7``)   equals it
a set of symbols            is one of them: a ``tuple``, ``list``, ``set``, ``frozenset``,
                            ``range``, ``bytes`` or ``bytearray`` (a ``str`` is always
                            one symbol, never a set)
a callable                  makes ``key(symbol)`` true
``True``                    is anything not matched by a more specific edge
``None`` (epsilon)          matches nothing else, or there is no symbol at all; the edge
                            consumes nothing
==========================  ===========================================================

They are tried in that order.  A target of ``None`` is an explicit *non*-transition: the
symbol is refused even where ``True`` or ``None`` would have matched it.

    >>> E, A = state("E"), state_input("A", terminal=True)
    >>> E["a"] = A
    >>> E["a"] is A, E.get("b") is None, str(A)
    (True, True, '((A))')

The kinds of state differ in what they do when entered: a plain ``state`` consumes nothing (a
decision point), ``state_input`` consumes one symbol and appends it to
``<path>.<context>.input`` in the run's data, ``state_drop`` consumes one symbol and discards
it.  A ``dfa`` (see ``cpppo.automata.dfa``) is a state that runs a whole sub-machine.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Hashable, Iterator
from typing import Any

__all__ = ["PATH_EXT_INPUT", "state", "state_drop", "state_input"]

PATH_EXT_INPUT = ".input"  # where state_input stores its symbols, after the context

# What a state does when entered (read by the dfa run loop).
PLAIN, INPUT, DROP, MACHINE = 0, 1, 2, 3

# Marks "no edge for this key", as distinct from an edge whose target is None.
MISSING: Any = type("MISSING", (), {"__repr__": lambda self: "MISSING"})()

SYMBOL_SETS = (tuple, list, set, frozenset, range, bytes, bytearray)

# Bumped whenever any edge changes anywhere, so machines know their compiled tables are stale.
_edits = [0]


def edits() -> int:
    """A counter that changes whenever an edge is added to any state."""
    return _edits[0]


def _str_typecode() -> str:
    return "w" if "w" in array.typecodes else "u"  # 'u' is deprecated from Python 3.13


class state:  # noqa: N801 - the spec's public name
    """A state that consumes no symbol: entering it only decides where to go next."""

    kind = PLAIN

    def __init__(self, name: str, terminal: bool = False, context: str | None = None,
                 extension: str | None = None, alphabet: Any = None) -> None:
        self._name = str(name)
        self._terminal = bool(terminal)
        self._context = context
        self._extension = extension
        self.alphabet = alphabet  # None (anything), a type, a container or a predicate
        self._edges: dict[Hashable, state | None] = {}
        self._tests: list[tuple[Callable[[Any], Any], state | None]] = []
        self._any: state | None = MISSING
        self._epsilon: state | None = MISSING

    # --- identity and display -------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def terminal(self) -> bool:
        """True if a machine whose sub-machine stops here has accepted its input."""
        return self._terminal

    def __str__(self) -> str:
        mark = self.terminal
        return "(" + ("(" if mark else " ") + self.name + (")" if mark else " ") + ")"

    def __repr__(self) -> str:
        return f"<{self}>"

    def name_centered(self, width: int = 40) -> str:
        """``str(self)`` in a fixed-width field, its last ``.`` on a fixed column (three
        quarters across), so the states of nested machines line up when printed."""
        text = str(self)
        axis = text.rfind(".")
        left, right = (text[:axis], text[axis:]) if axis >= 0 else (text, "")
        lwidth = width * 3 // 4
        left = left[-lwidth:].rjust(lwidth)
        return (left + right)[:width].ljust(width)

    # --- data context ----------------------------------------------------------------
    @property
    def extension(self) -> str:
        return self._extension or ""

    def context(self, path: str | None = None, extension: str | None = None) -> str:
        """``<path>.<context><extension>``: where this state keeps its data under ``path``.

        >>> state("s", context="boo").context(), state("s", context="boo").context("a.b", "_")
        ('boo', 'a.b.boo_')
        """
        pre, add = path or "", self._context or ""
        ext = self.extension if extension is None else extension
        return pre + ("." if pre and add else "") + add + ext

    # --- edges -----------------------------------------------------------------------
    def __setitem__(self, key: Any, target: state | None) -> None:
        if target is not None and not isinstance(target, state):
            raise TypeError(f"{self}: a transition's target must be a state or None, "
                            f"not {target!r}")
        if key is True:
            self._any = target
        elif key is None:
            self._epsilon = target
        elif isinstance(key, SYMBOL_SETS):
            for symbol in key:
                self._edges[symbol] = target
        elif callable(key):
            self._tests.append((key, target))
        else:
            self._edges[key] = target
        _edits[0] += 1

    def __getitem__(self, symbol: Any) -> state | None:
        """The target for ``symbol`` (``None`` meaning no symbol is available); raises
        KeyError where there is no edge.  A target may be None (explicit refusal)."""
        target = MISSING
        if symbol is not None:
            target = self._edges.get(symbol, MISSING)
            if target is MISSING:
                for test, candidate in self._tests:
                    if test(symbol):
                        target = candidate
                        break
                else:
                    target = self._any
        if target is MISSING:
            target = self._epsilon
        if target is MISSING:
            raise KeyError(symbol)
        return target

    def get(self, symbol: Any, default: Any = None) -> Any:
        try:
            return self[symbol]
        except KeyError:
            return default

    def __contains__(self, key: Any) -> bool:
        if key is True:
            return self._any is not MISSING
        if key is None:
            return self._epsilon is not MISSING
        return key in self._edges

    def edges(self) -> Iterator[tuple[Any, state | None]]:
        """Every ``(key, target)`` edge: symbols, then predicates, then ``True``, ``None``."""
        yield from self._edges.items()
        yield from self._tests
        if self._any is not MISSING:
            yield True, self._any
        if self._epsilon is not MISSING:
            yield None, self._epsilon

    def nodes(self) -> Iterator[state]:
        """This state and every state reachable from it (not looking inside sub-machines)."""
        seen: set[int] = set()
        todo: list[state] = [self]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            todo.extend(t for _, t in node.edges() if t is not None)

    def accepts_symbol(self, symbol: Any) -> bool:
        """Whether ``symbol`` belongs to this state's alphabet."""
        alphabet = self.alphabet
        if alphabet is None:
            return True
        if isinstance(alphabet, type):
            return isinstance(symbol, alphabet)
        if hasattr(alphabet, "__contains__"):
            return symbol in alphabet
        return bool(alphabet(symbol))

    # A plain state keeps nothing about any one run, so any number of machines may share it.
    def __enter__(self) -> state:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


class state_input(state):  # noqa: N801 - the spec's public name
    """Consumes one symbol and appends it to ``<path>.<context>.input`` in the run's data.

    The collection is created on the first symbol: an ``array.array`` of ``typecode`` if one
    is given, else of unicode characters for ``str`` symbols, of bytes for ``int`` symbols
    (iterating ``bytes``), and a ``list`` for anything else."""

    kind = INPUT

    def __init__(self, name: str, typecode: str | None = None, **kwds: Any) -> None:
        if kwds.get("extension") is None:
            kwds["extension"] = PATH_EXT_INPUT
        super().__init__(name, **kwds)
        self.typecode = typecode

    def new_collection(self, symbol: Any) -> Any:
        """An empty collection to hold symbols like ``symbol``."""
        if self.typecode is not None:
            return array.array(self.typecode)
        if isinstance(symbol, str):
            return array.array(_str_typecode())
        if isinstance(symbol, int) and 0 <= symbol <= 255:
            return array.array("B")
        return []


class state_drop(state_input):  # noqa: N801 - the spec's public name
    """Consumes one symbol and throws it away."""

    kind = DROP
