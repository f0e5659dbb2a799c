"""State machines by hand: states, transitions, dfa composition, running (spec 4.1, 4.2, 5)."""

from __future__ import annotations

import contextlib
import io
import re
import threading

import pytest

import cpppo


def basic_states() -> tuple[cpppo.state, cpppo.state, cpppo.state]:
    """The spec's ``ab+`` graph: E --a--> A --b--> ((B)) --b--> ((B))."""
    E = cpppo.state("E")
    A = cpppo.state_input("A")
    B = cpppo.state_input("B", terminal=True)
    E["a"] = A
    A["b"] = B
    B["b"] = B
    return E, A, B


def csv_machine() -> tuple[cpppo.dfa, cpppo.dfa, cpppo.state]:
    """The spec's composite: ``ab+`` separated by ``,`` and dropped spaces."""
    E, _, _ = basic_states()
    ABP = cpppo.dfa("ab+", initial=E, terminal=True)
    SEP = cpppo.state_drop("SEP")
    ABP[","] = SEP
    SEP[" "] = SEP
    SEP[None] = ABP
    return cpppo.dfa("CSV", initial=ABP, context="csv"), ABP, SEP


def run(machine: cpppo.dfa, text, data=None) -> tuple[list, str, object]:
    """Run ``machine`` over ``text``; (pairs yielded, input left over, data)."""
    data = cpppo.dotdict() if data is None else data
    source = cpppo.peekable(text)
    with machine:
        pairs = list(machine.run(source=source, data=data))
    rest = list(source)
    return pairs, "".join(rest) if all(isinstance(s, str) for s in rest) else rest, data


# --- spec 4.1: a basic machine ----------------------------------------------------------


def test_basic_machine_accepts_ab_plus_and_leaves_the_rest():
    E, A, B = basic_states()
    BASIC = cpppo.dfa("ab+", initial=E, context="basic")
    pairs, rest, data = run(BASIC, "abbbb, ab")
    assert "".join(data["basic.input"]) == "abbbb"
    assert rest == ", ab"
    assert pairs == [(BASIC, E), (BASIC, A), (BASIC, B), (BASIC, B), (BASIC, B), (BASIC, B)]
    assert BASIC.current is B
    assert BASIC.terminal is False  # not made terminal=True (spec 4.3.2)


def test_terminal_needs_both_the_machine_and_its_final_state():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, context="basic", terminal=True)
    assert run(machine, "abbbb, ab")[0] and machine.terminal is True
    run(machine, "a, ab")
    assert machine.terminal is False  # stopped in A, which is not terminal


def test_not_greedy_stops_at_the_first_terminal_state():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, context="basic", terminal=True, greedy=False)
    _, rest, data = run(machine, "abbb,ab")
    assert "".join(data["basic.input"]) == "ab"
    assert rest == "bb,ab"
    assert machine.terminal


@pytest.mark.parametrize("text", ["x", "", "ax", "a", "b" * 3, "\x00"])
def test_a_symbol_without_a_transition_ends_the_run_non_terminal(text):
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, context="basic", terminal=True)
    pairs, rest, data = run(machine, text)
    assert machine.terminal is False
    assert pairs[0] == (machine, E)
    assert rest == text[len(data.get("basic.input") or ""):]


# --- spec 4.2: composite machines --------------------------------------------------------


def test_composite_machine_hands_unrecognised_symbols_to_the_enclosing_machine():
    CSV, ABP, SEP = csv_machine()
    pairs, rest, data = run(CSV, "abbbb, ab")
    assert "".join(data["csv.input"]) == "abbbbab"
    assert rest == ""
    # ',' is refused by ab+'s sub-machine, so CSV takes it: into SEP, from the ab+ dfa.
    assert (CSV, SEP) in pairs
    machines = [m for m, _ in pairs]
    assert machines.index(CSV, 1) > machines.index(ABP)
    # The input ran out in ab+'s B state, where a 'b' could still be taken: the non-transition
    # (machine, None) is reported before the run ends.
    assert (ABP, None) in pairs
    assert ABP.terminal and CSV.terminal is False  # CSV was not made terminal=True


def test_composite_stops_where_the_sub_machine_is_not_terminal():
    CSV, ABP, _ = csv_machine()
    _, rest, data = run(CSV, "ab, a, ab")
    assert "".join(data["csv.input"]) == "aba"
    assert rest == ", ab"
    assert CSV.current is ABP and not ABP.terminal


def test_a_set_of_symbols_true_and_none_transitions():
    start, word, space, other = (cpppo.state("start"), cpppo.state_input("word", terminal=True),
                                 cpppo.state_drop("space"), cpppo.state_input("other", terminal=True))
    start[tuple("abc")] = word
    start[{" ", "\t"}] = space
    start[True] = other
    word["abc"] = word  # a str is one symbol, never a set
    word[frozenset("abc")] = word
    word[None] = start  # epsilon: back to the decision point on anything else
    space[" "] = space
    space[None] = start
    other["!"] = None  # refuse '!' even though the epsilon edge would take it
    other[None] = start
    machine = cpppo.dfa("words", initial=start, context="w", terminal=True)
    _, rest, data = run(machine, "ab \t c\tzz!!")
    assert "".join(data["w.input"]) == "abczz"
    assert rest == "!!"
    assert machine.terminal  # stopped in 'other' (terminal), which refused '!'


def test_edge_precedence_symbol_then_predicate_then_true_then_none():
    s, t1, t2, t3, t4 = (cpppo.state(n) for n in ("s", "t1", "t2", "t3", "t4"))
    s["x"] = t1
    s[str.isdigit] = t2
    s[True] = t3
    s[None] = t4
    assert s["x"] is t1 and s["7"] is t2 and s["y"] is t3 and s[None] is t4
    assert "x" in s and True in s and None in s and "y" not in s
    assert [k for k, _ in s.edges()] == ["x", str.isdigit, True, None]
    with pytest.raises(KeyError):
        cpppo.state("empty")["a"]
    with pytest.raises(TypeError, match="target must be a state"):
        s["z"] = "not a state"


def test_byte_symbols_are_collected_in_a_byte_array():
    E, A, B = cpppo.state("E"), cpppo.state_input("A"), cpppo.state_input("B", terminal=True)
    E[b"\x01\x02"] = A  # bytes as a set of int symbols
    A[True] = B
    B[range(0x30, 0x3A)] = B
    machine = cpppo.dfa("bin", initial=E, context="frame", terminal=True)
    _, rest, data = run(machine, b"\x02\xff123\x00")
    assert bytes(data["frame.input"]) == b"\x02\xff123"
    assert rest == [0] and machine.terminal


def test_other_symbols_are_collected_in_a_list_and_alphabet_refusal_is_not_an_error():
    E, W = cpppo.state("E"), cpppo.state_input("W", terminal=True, alphabet=str)
    E[True] = W
    W[True] = W
    machine = cpppo.dfa("tokens", initial=E, terminal=True)
    _, rest, data = run(machine, ["GET", "/", 3, "x"])
    assert list(data["input"]) == ["GET", "/"]  # multi-character str symbols
    assert machine.terminal is False and rest == [3, "x"]  # 3 is outside W's alphabet


def test_running_without_data_keeps_nothing():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, terminal=True)
    source = cpppo.peekable("abb")
    assert len(list(machine.run(source=source))) == 5
    assert machine.terminal and source.sent == 3


def test_an_epsilon_cycle_ends_instead_of_looping():
    a, b = cpppo.state("a"), cpppo.state("b")
    a[None] = b
    b[None] = a
    machine = cpppo.dfa("loop", initial=a, terminal=True)
    pairs, rest, _ = run(machine, "xyz")
    assert len(pairs) < 10 and rest == "xyz" and not machine.terminal


def test_more_input_can_be_chained_at_a_non_transition():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, context="basic", terminal=True)
    source, data, chained = cpppo.peekable("ab"), cpppo.dotdict(), False
    with machine:
        for _, entered in machine.run(source=source, data=data):
            if entered is None and not chained:
                source.chain("bb;")
                chained = True
    assert "".join(data["basic.input"]) == "abbb"
    assert source.peek() == ";" and machine.terminal


def test_a_string_source_is_wrapped_in_a_peekable():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, context="basic", terminal=True)
    data = cpppo.dotdict()
    list(machine.run(source="abbx", data=data))
    assert "".join(data["basic.input"]) == "abb" and machine.terminal


def test_tables_are_compiled_once_and_again_only_after_an_edit():
    E, _, B = basic_states()
    machine = cpppo.dfa("ab+", initial=E, terminal=True)
    run(machine, "ab")
    compiled = machine._compiled
    run(machine, "abb")
    assert machine._compiled is compiled
    B["c"] = B
    _, rest, _ = run(machine, "abcb.")
    assert machine._compiled is not compiled and rest == "."


# --- re-entrancy ---------------------------------------------------------------------------


def test_with_machine_refuses_re_entry_from_the_same_thread():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E)
    with machine, pytest.raises(RuntimeError, match="already in use"):
        machine.__enter__()
    with machine:  # released again
        pass


def test_two_interleaved_runs_of_one_machine_are_refused():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E)
    with machine:
        first = machine.run(source="abb")
        next(first)
        with pytest.raises(RuntimeError, match="already running"):
            next(machine.run(source="abb"))
        first.close()


def test_a_machine_nested_in_itself_is_refused():
    start = cpppo.state("start")
    outer = cpppo.dfa("outer", initial=start)
    start[None] = outer
    with pytest.raises(RuntimeError):
        list(outer.run(source="a"))
    assert not outer._lock.locked()


def test_another_thread_waits_for_the_machine():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, terminal=True)
    order: list[str] = []
    entered = threading.Event()

    def other() -> None:
        entered.set()
        list(machine.run(source="ab"))
        order.append("other")

    with machine:
        thread = threading.Thread(target=other)
        thread.start()
        assert entered.wait(5)
        assert not thread.join(0.2) and thread.is_alive()  # blocked on the machine
        order.append("first")
    thread.join(5)
    assert order == ["first", "other"] and machine.terminal


# --- names and contexts ------------------------------------------------------------------


def test_names_contexts_and_centered_names():
    E, _, B = basic_states()
    machine = cpppo.dfa("ab+", initial=E, context="basic")
    assert str(B) == "((B))" and repr(E) == "<( E )>"
    assert machine.name == "ab+.( E )" and str(machine) == "( ab+.( E ) )"
    assert machine.context() == "basic" and machine.context("top") == "top.basic"
    assert cpppo.state_input("A").context("p") == "p.input"
    centered = [m.name_centered() for m in (machine, cpppo.dfa("CSV", initial=machine))]
    assert all(len(c) == 40 for c in centered)
    assert len({c.rindex(".") for c in centered}) == 1  # the axis lines up
    assert cpppo.dfa("a-very-long-machine-name" * 3, initial=E).name_centered().rstrip()


def test_dfa_needs_an_initial_state():
    with pytest.raises(TypeError, match="initial state"):
        cpppo.dfa("nothing")


# --- spec 5: the run loop ----------------------------------------------------------------


def test_spec_section_5_run_loop():
    E, _, _ = basic_states()
    BASIC = cpppo.dfa("ab+", initial=E, context="basic")
    CSV, _, _ = csv_machine()
    REGEX = cpppo.regex(initial="(ab+)(([ ]*)(ab+))*")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # the spec's loop, as written there
        data = cpppo.dotdict()
        for machine in [BASIC, CSV, REGEX]:
            path = machine.context() + ".input"  # default for state_input data
            source = cpppo.peekable(str("abbbb, ab"))  # noqa: UP018
            with machine:
                for i, (m, _s) in enumerate(machine.run(source=source, data=data)):
                    print("%s #%3d; next byte %3d: %-10.10r: %r" % (  # noqa: UP031
                        m.name_centered(), i, source.sent, source.peek(), data.get(path)))
            print("Accepted: %r; remaining: %r\n" % (data.get(path), "".join(source)))  # noqa: UP031
        print("Final: %r" % (data))  # noqa: UP031
    text = re.sub(r"array\('[uw]', ('[^']*')\)", r"\1", out.getvalue())  # 'w' from Python 3.13
    accepted = [line for line in text.splitlines() if line.startswith("Accepted")]
    assert accepted == [
        "Accepted: 'abbbb'; remaining: ', ab'",
        "Accepted: 'abbbbab'; remaining: ''",
        "Accepted: 'abbbb'; remaining: ', ab'",
    ]
    assert sorted(data) == ["basic.input", "csv.input", "input"]
    assert " #  0; next byte   0: 'a'       : None" in text
    assert "( ab+.((B)) )   #  5; next byte   4: 'b'       : 'abbb'" in text


def test_unhashable_symbols_end_the_run_quietly():
    E, _, _ = basic_states()
    machine = cpppo.dfa("ab+", initial=E, context="basic", terminal=True)
    pairs, rest, _ = run(machine, ["a", ["b"], "b"])
    assert rest == [["b"], "b"] and machine.terminal is False and len(pairs) == 2
