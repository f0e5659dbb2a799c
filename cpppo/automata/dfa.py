"""``dfa``: a state that runs a whole sub-machine of states (which may be dfas themselves).

Running a machine yields ``(machine, state)`` pairs: the machine that made a transition and
the state it entered.  A dfa first yields its initial state, then every state its sub-machine
enters; a nested dfa yields its own pairs in between.  ``(machine, None)`` is a
*non-transition*: the input ran out where more could have been taken.  The caller may add
input then (``source.chain(...)``) and keep iterating; if it does not, the run ends.

The sub-machine stops when its current state has no edge for the next symbol.  That state
decides the outcome: ``dfa.terminal`` is true only if the dfa was made with ``terminal=True``
and the state it stopped in is terminal.  A symbol that no state can take is simply left in
the source; the run never raises for bad input.

A dfa nested in another one hands the symbol it cannot take to the enclosing machine: once the
inner machine stops in a terminal state, the enclosing machine follows the inner dfa's own
edges (the spec's ``CSV`` machine takes ``','`` out of its ``ab+`` sub-machine this way).  If
the inner machine stopped short of a terminal state, the enclosing machine stops there too.

``greedy`` (the default) keeps going through terminal states for as long as symbols take
edges; ``greedy=False`` stops at the first terminal state reached.

Each dfa compiles the graph it runs into linked tables once (again only after an edge is
added somewhere), so the run loop does one dictionary look-up per symbol.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from cpppo.automata.states import INPUT, MACHINE, MISSING, PLAIN, edits, state
from cpppo.peekable import peekable

__all__ = ["dfa"]

# A compiled state: [state, kind, edges, any, epsilon, tests, terminal, alphabet check]
# where edges maps a symbol to a compiled state (or None), and any/epsilon are compiled
# states, None, or MISSING.
_STATE, _KIND = 0, 1


def _as_peekable(source: Any) -> Any:
    if all(hasattr(source, name) for name in ("peek", "push", "sent")):
        return source
    return peekable(source)


class dfa(state):  # noqa: N801 - the spec's public name
    """A state machine: ``dfa(name, initial=<state>, context=..., terminal=..., greedy=...)``.

    It keeps the state its last run stopped in (``current``), so one dfa runs one sentence at
    a time: ``with machine:`` holds it for one thread (another thread waits; the same thread
    entering it again, e.g. a dfa nested in itself, is an error), and ``run`` holds it for the
    run if the caller did not."""

    kind = MACHINE

    def __init__(self, name: str | None = None, initial: state | None = None,
                 greedy: bool = True, **kwds: Any) -> None:
        if not isinstance(initial, state):
            raise TypeError(f"dfa {name!r} needs an initial state, not {initial!r}")
        super().__init__(name or type(self).__name__, **kwds)
        self.initial = initial
        self.current: state = initial
        self.greedy = bool(greedy)
        self._stuck = False
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._running = False
        self._compiled: tuple[int, list[Any], int] | None = None

    # --- display and outcome ----------------------------------------------------------
    @property
    def name(self) -> str:
        """The dfa's name and the state its sub-machine is in: ``'ab+.( E )'``."""
        return f"{self._name}.{self.current}"

    @property
    def terminal(self) -> bool:
        return self._terminal and not self._stuck and self.current.terminal

    # --- one user at a time -------------------------------------------------------------
    def __enter__(self) -> dfa:
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError(f"dfa {self._name!r} is already in use by this thread")
        self._lock.acquire()
        self._owner = me
        return self

    def __exit__(self, *exc: object) -> bool:
        self._owner = None
        self._lock.release()
        return False

    # --- compiled transition tables ----------------------------------------------------
    def _table(self) -> tuple[list[Any], int]:
        """The compiled initial state and the number of states, rebuilt only after edits."""
        stamp = edits()
        if self._compiled is None or self._compiled[0] != stamp:
            compiled: dict[int, list[Any]] = {}
            for node in self.initial.nodes():
                check = None if node.alphabet is None or node.kind == PLAIN else node.accepts_symbol
                compiled[id(node)] = [node, node.kind, {}, MISSING, MISSING, [], node.terminal, check]

            def link(target: state | None) -> Any:
                return target if target is None or target is MISSING else compiled[id(target)]

            for record in compiled.values():
                node = record[_STATE]
                record[2] = {sym: link(t) for sym, t in node._edges.items()}
                record[3], record[4] = link(node._any), link(node._epsilon)
                record[5] = [(test, link(t)) for test, t in node._tests]
            self._compiled = (stamp, compiled[id(self.initial)], len(compiled))
        return self._compiled[1], self._compiled[2]

    # --- running ---------------------------------------------------------------------------
    def run(self, source: Any, machine: Any = None, path: str | None = None,
            data: Any = None) -> Iterator[tuple[dfa, state | None]]:
        """Run the sub-machine over ``source`` (any iterable; wrapped in a ``peekable`` if it
        is not one), storing input under ``self.context(path)`` in ``data`` (a dotdict, or
        None to keep nothing).  Yields ``(machine, state)`` pairs; see the module docs.
        ``machine`` (the enclosing machine) is accepted for upstream's signature."""
        source = _as_peekable(source)
        lock_here = self._owner != threading.get_ident()  # else the caller holds it (with ...)
        if not lock_here and self._running:
            raise RuntimeError(f"dfa {self._name!r} is already running")
        if lock_here:
            self.__enter__()
        try:
            self._running = True
            yield from self._run(source, self.context(path), data)
        finally:
            self._running = False
            if lock_here:
                self.__exit__()

    def _run(self, source: Any, ctx: str, data: Any) -> Iterator[tuple[dfa, state | None]]:
        record, states = self._table()
        peek, take = source.peek, source.__next__
        greedy = self.greedy
        store: dict[state, Any] = {}  # state_input -> its collection in data, for this run
        self._stuck = False
        self.current = record[_STATE]
        yield self, self.current
        idle, sent = 0, source.sent
        while True:
            node, kind, edges, anyr, epsr, tests, terminal, check = record
            # Enter the state: run a sub-machine, or consume a symbol, or nothing.
            if kind == MACHINE:
                yield from node.run(source, self, ctx, data)
                terminal = node.terminal
                if not terminal:
                    return
            elif kind != PLAIN:
                symbol = peek()
                if symbol is None:
                    yield self, None
                    symbol = peek()
                if symbol is None or (check is not None and not check(symbol)):
                    self._stuck = True
                    return
                take()
                if kind == INPUT and data is not None:
                    bucket = store.get(node)
                    if bucket is None:
                        bucket = store[node] = self._collection(node, ctx, data, symbol)
                    try:
                        bucket.append(symbol)
                    except (TypeError, OverflowError):  # the array cannot hold it: use a list
                        bucket = store[node] = data[node.context(ctx)] = [*bucket, symbol]
            if terminal and not greedy:
                return
            # Choose the edge out of it.
            asked = False
            while True:
                symbol = peek()
                target = MISSING
                if symbol is not None:
                    try:
                        target = edges.get(symbol, MISSING)
                    except TypeError:  # an unhashable symbol: no symbol edge can match it
                        pass
                    if target is MISSING:
                        for test, candidate in tests:
                            if test(symbol):
                                target = candidate
                                break
                        else:
                            target = anyr
                if target is MISSING:
                    target = epsr
                if target is MISSING and symbol is None and not asked and (
                        edges or tests or anyr not in (None, MISSING)):
                    asked = True
                    yield self, None  # out of input where a symbol could be taken
                    continue
                break
            if target is None or target is MISSING:
                return
            # Guard against cycles of edges that consume nothing.
            if source.sent == sent:
                idle += 1
                if idle > states:  # a cycle of edges that consume nothing: give up
                    self._stuck = True
                    return
            else:
                idle, sent = 0, source.sent
            record = target
            self.current = node = target[_STATE]
            yield self, node

    @staticmethod
    def _collection(node: Any, ctx: str, data: Any, symbol: Any) -> Any:
        """The collection ``node`` appends to in ``data``: found there, or made and put there."""
        where = node.context(ctx)
        bucket = data.get(where)
        if bucket is None or not hasattr(bucket, "append"):
            bucket = data[where] = node.new_collection(symbol)
        return bucket
