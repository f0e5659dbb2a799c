"""State machines: states joined by transitions on symbols, composed into ``dfa`` s, and
built from regular expressions (``regex``).  See spec sections 4 and 5.

    >>> import cpppo
    >>> E, A, B = cpppo.state("E"), cpppo.state_input("A"), cpppo.state_input("B", terminal=True)
    >>> E["a"], A["b"], B["b"] = A, B, B
    >>> machine, data = cpppo.dfa("ab+", initial=E, context="basic", terminal=True), cpppo.dotdict()
    >>> source = cpppo.peekable("abbb, ab")
    >>> with machine:
    ...     for m, s in machine.run(source=source, data=data):
    ...         pass
    >>> "".join(data["basic.input"]), machine.terminal, "".join(source)
    ('abbb', True, ', ab')
"""

from __future__ import annotations

from cpppo.automata.dfa import dfa
from cpppo.automata.regex import RegexError, regex, regex_bytes
from cpppo.automata.states import PATH_EXT_INPUT, state, state_drop, state_input

__all__ = [
    "PATH_EXT_INPUT", "RegexError", "dfa", "regex", "regex_bytes", "state", "state_drop",
    "state_input",
]
