"""History speed: timestamps and history files, ours vs upstream cpppo 5.2.5, in one run.

    python benchmarks/bench_history.py [--count N] [--rounds R]

Four measurements over N items, each side in its own ``python -I`` subprocess (upstream from
its cached virtualenv, ``tests.upstream``), best of R rounds:

- render: ``str(timestamp(v))`` (UTC, milliseconds) for N distinct values;
- parse: ``timestamp(text)`` for N UTC strings;
- write: N ``(time, name, [4 ints])`` records to a plain file (ours: ``HistoryWriter(path,
  flush=False)``, upstream: ``logger(path).write``, both buffered);
- read: read them back with the JSON decoded (ours: ``read_history``, upstream:
  ``parse_record`` + ``json.loads``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MEASURE = r"""
import json, os, sys, time
count, rounds, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
import cpppo.history as history
timestamp = history.timestamp
ours = hasattr(history, "HistoryWriter")
values = [1405461824.186 + i * 0.731 for i in range(count)]
texts = [str(timestamp(v)) for v in values]
path = os.path.join(directory, "bench.hst")

def render():
    for v in values:
        str(timestamp(v))

def parse():
    for t in texts:
        timestamp(t)

def write():
    if os.path.exists(path):
        os.remove(path)
    if ours:
        with history.HistoryWriter(path, flush=False) as w:
            for i, v in enumerate(values):
                w.write(v, "Tag_%d" % (i % 10), [i, i + 1, i + 2, i + 3])
    else:
        with history.logger(path) as w:
            for i, v in enumerate(values):
                w.write([i, i + 1, i + 2, i + 3], now=v, serial="Tag_%d" % (i % 10))

def read():
    n = 0
    if ours:
        for record in history.read_history(path):
            n += 1
    else:
        with open(path, "rb") as fd:
            line = -1
            while True:
                try:
                    line, (ts, name, text) = history.parse_record(fd, line)
                except StopIteration:
                    break
                json.loads(text)
                n += 1
    assert n == count, n

result = {}
for name, step in (("render", render), ("parse", parse), ("write", write), ("read", read)):
    best = None
    for _ in range(rounds):
        begun = time.perf_counter()
        step()
        took = time.perf_counter() - begun
        best = took if best is None else min(best, took)
    result[name] = best
print(json.dumps(result))
"""


def measure(python: str, count: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        argv = [python, "-I", "-W", "ignore", "-c", MEASURE, str(count), str(rounds), directory]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd="/",
                              check=False, env=dict(os.environ, TZ="UTC"))
    if done.returncode != 0:
        raise SystemExit(f"measurement failed ({python}): {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="items per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side; best counts")
    args = parser.parse_args(argv)

    from tests.upstream import upstream_python

    started = time.monotonic()
    ours = measure(sys.executable, args.count, args.rounds)
    theirs = measure(str(upstream_python()), args.count, args.rounds)
    print(f"{args.count:,} items, best of {args.rounds} rounds; items/s")
    print(f"{'operation':<8} {'ours':>12} {'upstream':>12} {'ours/upstream':>14}")
    for name in ("render", "parse", "write", "read"):
        mine, their = args.count / ours[name], args.count / theirs[name]
        print(f"{name:<8} {mine:>12,.0f} {their:>12,.0f} {mine / their:>13.2f}x")
    print(f"(wall {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
