"""Machines from regular expressions (spec 4.3): greenery 4.x, greedy, terminal, Unicode."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import greenery
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cpppo
from cpppo.automata.regex import RegexError

ROOT = Path(__file__).resolve().parent.parent
CSV_EXPRESSION = "(ab+)((,[ ]*)(ab+))*"


def run(machine: cpppo.dfa, text: str) -> tuple[str, str]:
    """(accepted input, remaining input) after running ``machine`` over ``text``."""
    data, source = cpppo.dotdict(), cpppo.peekable(text)
    with machine:
        for _ in machine.run(source=source, data=data):
            pass
    return "".join(data.get(machine.context() + ".input") or ""), "".join(source)


def test_spec_regex_accepts_ab_plus_separated_by_spaces_only():
    REGEX = cpppo.regex(initial="(ab+)(([ ]*)(ab+))*")
    assert REGEX.name.startswith("(ab+)(([ ]*)(ab+))*.")  # the default name is the expression
    assert run(REGEX, "abbbb, ab") == ("abbbb", ", ab")
    assert REGEX.terminal is False  # not made terminal=True


def test_spec_regex_with_separators_accepts_the_whole_sentence():
    REGEX = cpppo.regex(initial="(ab+)(([, ]*)(ab+))*", context="regex", terminal=True)
    assert run(REGEX, "abbbb, ab") == ("abbbb, ab", "")
    assert REGEX.terminal is True


@pytest.mark.parametrize(("text", "accepted", "rest", "terminal"), [
    ("abbb, ab;x", "abbb, ab", ";x", True),
    ("ab,", "ab,", "", False),  # ',' could start more: consumed, but the sentence is unfinished
    ("ab, x", "ab, ", "x", False),
    ("x", "", "x", False),
    ("", "", "", False),
])
def test_terminal_tells_whether_the_sentence_was_accepted(text, accepted, rest, terminal):
    machine = cpppo.regex(initial=CSV_EXPRESSION, terminal=True)
    assert run(machine, text) == (accepted, rest)
    assert machine.terminal is terminal


@pytest.mark.parametrize(("expression", "text", "greedy", "accepted"), [
    ("a|ab", "abb", True, "ab"),
    ("a|ab", "abb", False, "a"),
    ("ab+", "abbbc", True, "abbb"),
    ("ab+", "abbbc", False, "ab"),
    ("a*", "aab", True, "aa"),
    ("a*", "aab", False, ""),  # the empty sentence is already accepted
    ("(a|ab)c", "abcd", False, "abc"),
])
def test_greedy_takes_the_longest_sentence_and_not_greedy_the_first(expression, text, greedy,
                                                                   accepted):
    machine = cpppo.regex(initial=expression, terminal=True, greedy=greedy)
    assert run(machine, text) == (accepted, text[len(accepted):])
    assert machine.terminal


@pytest.mark.parametrize(("expression", "text", "accepted"), [
    ("é+[^x]", "ééyz", "ééy"),
    ("[à-ÿ]+", "çàÿa", "çàÿ"),
    ("[\u0100-\uffff]+", "ĀЖ中\uffffa", "ĀЖ中\uffff"),  # a class too big to tabulate
    ("[^\u0100-\uffff]+", "aé😀Ж", "aé😀"),
    (".+", "😀 ∑x", "😀 ∑x"),
    ("\\d+-\\w+", "42-abc_9!", "42-abc_9"),
    ("日本(語|人)", "日本語です", "日本語"),
])
def test_unicode_symbols_and_character_classes(expression, text, accepted):
    machine = cpppo.regex(initial=expression, terminal=True)
    assert run(machine, text) == (accepted, text[len(accepted):])
    assert machine.terminal


@pytest.mark.parametrize("expression", ["(ab", "a)", "*", "a**", "[", "[z-a]", "a{3,1}", "\\"])
def test_an_expression_greenery_cannot_parse_raises_one_clear_error(expression):
    with pytest.raises(RegexError) as caught:
        cpppo.regex(initial=expression)
    message = str(caught.value)
    assert message.startswith("cannot parse regular expression ")
    assert repr(expression) in message and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_regex_needs_an_expression():
    with pytest.raises(RegexError, match="needs a regular expression"):
        cpppo.regex()


def test_a_greenery_pattern_or_fsm_is_accepted_too():
    pattern = greenery.parse("ab+")
    assert run(cpppo.regex(initial=pattern, terminal=True), "abbc") == ("abb", "c")
    assert run(cpppo.regex("named", initial=pattern.to_fsm(), terminal=True), "ab") == ("ab", "")


def test_an_expression_matching_nothing_accepts_nothing():
    machine = cpppo.regex(initial="a[]", terminal=True)
    assert run(machine, "aaa") == ("", "aaa") and machine.terminal is False


def test_a_regex_is_a_sub_machine_handing_separators_up():
    number = cpppo.regex("number", initial="[0-9]+", terminal=True)
    sep = cpppo.state_drop("sep")
    number[","] = sep
    sep[None] = number
    numbers = cpppo.dfa("numbers", initial=number, context="n", terminal=True)
    data, source = cpppo.dotdict(), cpppo.peekable("12,345,6;")
    with numbers:
        list(numbers.run(source=source, data=data))
    assert "".join(data["n.input"]) == "123456"
    assert source.peek() == ";" and numbers.terminal


def viable(prefix: str) -> bool:
    """Can ``prefix`` still become a sentence of CSV_EXPRESSION?  (It always can with one of
    these completions, if at all.)"""
    return any(re.fullmatch(CSV_EXPRESSION, prefix + more) for more in ("", "b", "ab"))


# Built once: a machine is reusable run after run (greenery's compile is the slow part).
GREEDY = cpppo.regex(initial=CSV_EXPRESSION, terminal=True)
FIRST = cpppo.regex(initial=CSV_EXPRESSION, terminal=True, greedy=False)
ANY_INPUT = (cpppo.regex(initial="(é|[a-z])+[0-9]?", terminal=True),
             cpppo.regex(initial=".[^a]*", terminal=True, greedy=False))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab, x", max_size=30))
def test_greedy_regex_agrees_with_python_re(text):
    machine = GREEDY
    accepted, rest = run(machine, text)
    assert accepted + rest == text
    assert viable(accepted)
    assert not rest or not viable(accepted + rest[0])  # stopped at the first impossible symbol
    assert machine.terminal == bool(re.fullmatch(CSV_EXPRESSION, accepted))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab, x", max_size=30))
def test_non_greedy_regex_stops_at_the_shortest_sentence(text):
    machine = FIRST
    accepted, rest = run(machine, text)
    assert accepted + rest == text
    if machine.terminal:
        assert re.fullmatch(CSV_EXPRESSION, accepted)
        assert not any(re.fullmatch(CSV_EXPRESSION, accepted[:n]) for n in range(len(accepted)))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_input_never_raises(text):
    for machine in ANY_INPUT:
        accepted, rest = run(machine, text)
        assert accepted + rest == text


@pytest.mark.interop
def test_same_results_as_upstream_cpppo(upstream_python):
    """Upstream's regex over sentences it accepts (it raises on the rest) matches ours."""
    texts = ["abbbb, ab", "ab,ab;", "abbb, ab,   abbb x", "ab"]
    script = (
        "import sys, cpppo\n"
        f"for text in {texts!r}:\n"
        f"    m, data, src = cpppo.regex(initial={CSV_EXPRESSION!r}, terminal=True),"
        " cpppo.dotdict(), cpppo.peekable(text)\n"
        "    with m:\n"
        "        list(m.run(source=src, data=data))\n"
        "    print(repr((''.join(data.get('.input')), ''.join(src), m.terminal)))\n"
    )
    done = subprocess.run([str(upstream_python), "-I", "-c", script], capture_output=True,
                          text=True, timeout=120, cwd="/", check=True)
    theirs = done.stdout.splitlines()
    ours = []
    for text in texts:
        machine = cpppo.regex(initial=CSV_EXPRESSION, terminal=True)
        ours.append(repr((*run(machine, text), machine.terminal)))
    assert ours == theirs


@pytest.mark.interop
def test_benchmark_script_runs_side_by_side(upstream_python):
    done = subprocess.run([sys.executable, "benchmarks/bench_automata.py", "--size", "3000",
                           "--rounds", "1"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, check=True)
    assert "upstream cpppo 5.2.5" in done.stdout and "ratio ours/upstream" in done.stdout
    assert done.stdout.count("True") == 2  # both sides accepted the whole input


# --- regex_bytes: the same expressions over UTF-8 bytes ----------------------------------


def run_bytes(machine: cpppo.dfa, raw: bytes) -> tuple[bytes, bytes]:
    data, source = cpppo.dotdict(), cpppo.peekable(raw)
    with machine:
        for _ in machine.run(source=source, data=data):
            pass
    return bytes(data.get(machine.context() + ".input") or b""), bytes(source)


@pytest.mark.parametrize(("expression", "text", "accepted"), [
    ("é+[^x]", "ééyz", "ééy"),
    ("a.c", "a日c!", "a日c"),
    ("日本(語|人)", "日本語です", "日本語"),
    ("[^a]+", "bé日😀a", "bé日😀"),
    ("(ab+)((,[ ]*)(ab+))*", "abbb, ab;", "abbb, ab"),
    ("x[à-ÿ]*", "xàÿéa", "xàÿé"),
])
def test_regex_bytes_matches_utf8_encoded_characters(expression, text, accepted):
    machine = cpppo.regex_bytes(initial=expression, terminal=True)
    raw = text.encode()
    assert run_bytes(machine, raw) == (accepted.encode(), raw[len(accepted.encode()):])
    assert machine.terminal


def test_regex_bytes_with_large_classes_and_any_character():
    machine = cpppo.regex_bytes(initial="[\u0100-\uffff]+[^\u0100-\U0010ffff]", terminal=True)
    raw = "ĀЖ中\uffffé😀".encode()
    assert run_bytes(machine, raw) == ("ĀЖ中\uffffé".encode(), "😀".encode())
    assert machine.terminal
    anything = cpppo.regex_bytes(initial=".*", terminal=True)
    raw = "a\x00é中😀\U0010ffff".encode()
    assert run_bytes(anything, raw + b"\xff") == (raw, b"\xff")  # 0xff is never UTF-8


BYTES_EXPRESSION = "(é|[a-c])+([^a-cé]日)?"
BY_STR = cpppo.regex(initial=BYTES_EXPRESSION, terminal=True)
BY_BYTES = cpppo.regex_bytes(initial=BYTES_EXPRESSION, terminal=True)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcéè日本x", max_size=20))
def test_regex_bytes_agrees_with_regex_on_encoded_text(text):
    accepted, _ = run(BY_STR, text)
    raw_accepted, raw_rest = run_bytes(BY_BYTES, text.encode())
    assert raw_accepted + raw_rest == text.encode()
    # The byte machine may also take the leading byte(s) of a refused character that shares
    # them with a character it could take (é and è both start with 0xC3); nothing more.
    assert raw_accepted.startswith(accepted.encode())
    assert len(raw_accepted) - len(accepted.encode()) < 4
    if raw_accepted == accepted.encode():
        assert BY_BYTES.terminal == BY_STR.terminal
