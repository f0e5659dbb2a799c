"""Regex state machine speed: ours vs upstream cpppo, over the same 1 MB input, in one run.

    python benchmarks/bench_automata.py [--size BYTES] [--rounds N]

Both sides build ``regex(initial=EXPRESSION, terminal=True)`` once, then run it over the
input with the spec's loop (``for m, s in machine.run(source=peekable(text), data=dotdict())``),
consuming every ``(machine, state)`` pair.  Upstream runs in its own virtualenv
(``tests.upstream``) as a ``python -I`` subprocess, so it never imports our ``cpppo``.  Each
side reports its best round; the table shows symbols/s and our ratio to upstream.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EXPRESSION = "(ab+)((,[ ]*)(ab+))*"
UNIT = "abbbb, ab,abb, abbbbbbb,ab, "

# Run by both interpreters: measure one machine over the text; print a JSON result.
MEASURE = r"""
import json, sys, time
import cpppo
expression, size, rounds, unit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
text = (unit * (size // len(unit) + 1))[:size]
text = text[: text.rfind("b") + 1]
machine = cpppo.regex(initial=expression, terminal=True)
best = None
for _ in range(rounds):
    data, source = cpppo.dotdict(), cpppo.peekable(text)
    begun = time.perf_counter()
    with machine:
        steps = sum(1 for _ in machine.run(source=source, data=data))
    took = time.perf_counter() - begun
    best = took if best is None else min(best, took)
    ok = machine.terminal and source.sent == len(text) and len(data.get(".input")) == len(text)
print(json.dumps({"symbols": len(text), "steps": steps, "seconds": best, "accepted": bool(ok)}))
"""


def measure(python: str, size: int, rounds: int, cwd: Path) -> dict:
    argv = [python, "-I", "-c", MEASURE, EXPRESSION, str(size), str(rounds), UNIT]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=cwd, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed ({python}): {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="input symbols (default 1 MB)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per side; best counts")
    args = parser.parse_args(argv)

    from tests.upstream import upstream_python

    started = time.monotonic()
    ours = measure_ours(args.size, args.rounds)  # the same script, in this interpreter
    theirs = measure(str(upstream_python()), args.size, args.rounds, Path("/"))
    rows = [("ours (cpppo-fleet)", ours), ("upstream cpppo 5.2.5", theirs)]
    print(f"regex {EXPRESSION!r} over {ours['symbols']:,} symbols, best of {args.rounds}")
    print(f"{'implementation':<22} {'seconds':>9} {'symbols/s':>12} {'accepted':>9}")
    for label, result in rows:
        rate = result["symbols"] / result["seconds"]
        print(f"{label:<22} {result['seconds']:>9.3f} {rate:>12,.0f} {result['accepted']!s:>9}")
    ratio = theirs["seconds"] / ours["seconds"]
    print(f"ratio ours/upstream symbols/s: {ratio:.1f}x   (wall {time.monotonic() - started:.0f} s)")
    return 0


def measure_ours(size: int, rounds: int) -> dict:
    """Run the same measurement script in this interpreter (our cpppo is importable here)."""
    import contextlib
    import io

    stdout = io.StringIO()
    saved = sys.argv
    sys.argv = ["measure", EXPRESSION, str(size), str(rounds), UNIT]
    try:
        with contextlib.redirect_stdout(stdout):
            exec(compile(MEASURE, "<measure>", "exec"), {"__name__": "__measure__"})
    finally:
        sys.argv = saved
    return json.loads(stdout.getvalue().strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
