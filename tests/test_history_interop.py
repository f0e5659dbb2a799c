"""cpppo.history against upstream cpppo 5.2.5: the same renderings, and history files that each
side reads from the other (upstream's ``logger`` / ``parse_record``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cpppo.history import HistoryWriter, read_history, timestamp

pytestmark = pytest.mark.interop

VALUES = [0.0, 1399326141.999836, 1414915323.122, 1414915323.125, 1405461824.186, 1700000000.0004,
          1700000000.0006, 2114380799.999]

UPSTREAM_RENDER = r"""
import json, sys
from cpppo.history import timestamp
values = json.loads(sys.argv[1])
print(json.dumps([[str(timestamp(v)), timestamp(str(timestamp(v))).value] for v in values]))
"""

UPSTREAM_WRITE = r"""
import sys
from cpppo.history import logger
with logger(sys.argv[1]) as history:
    history.write({"write": [0, 1, 2, 3]}, now=1405461824.186, serial=["Tag_Name", [0, 3]])
    history.comment("a comment")
    history.write(3.5, now=1405461825.5, serial="Motor_Speed")
"""

UPSTREAM_READ = r"""
import gzip, json, sys
from cpppo.history import parse_record
path = sys.argv[1]
out, n = [], -1
with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as fd:
    while True:
        try:
            n, (ts, name, text) = parse_record(fd, n)
        except StopIteration:
            break
        out.append([ts.value, name, json.loads(text)])
print(json.dumps(out))
"""


def upstream(python: Path, script: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([str(python), "-I", "-W", "ignore", "-c", script, *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_same_utc_renderings_as_upstream(upstream_python: Path, tmp_path: Path) -> None:
    theirs = json.loads(upstream(upstream_python, UPSTREAM_RENDER, json.dumps(VALUES), cwd=tmp_path))
    for value, (text, parsed) in zip(VALUES, theirs, strict=True):
        assert str(timestamp(value)) == text
        assert timestamp(text).value == pytest.approx(parsed, abs=1e-6)


def test_we_read_upstream_logger_files(upstream_python: Path, tmp_path: Path) -> None:
    path = tmp_path / "upstream.hst"
    upstream(upstream_python, UPSTREAM_WRITE, str(path), cwd=tmp_path)
    records = [(str(ts), name, value) for ts, name, value in read_history(path)]
    assert records == [("2014-07-15 22:03:44.186", ["Tag_Name", [0, 3]], {"write": [0, 1, 2, 3]}),
                       ("2014-07-15 22:03:45.500", "Motor_Speed", 3.5)]


@pytest.mark.parametrize("name", ["ours.hst", "ours.hst.gz"])
def test_upstream_reads_our_files(upstream_python: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with HistoryWriter(path) as history:
        written = [history.write(1405461824.186 + i, f"Tag_{i}", [i, i * 0.5, None, "x"]) for i in range(5)]
        history.comment("written by cpppo-fleet")
    theirs = json.loads(upstream(upstream_python, UPSTREAM_READ, str(path), cwd=tmp_path))
    assert len(theirs) == len(written)
    for (value, name_, data), record in zip(theirs, written, strict=True):
        assert timestamp(value) == record.timestamp
        assert (name_, data) == (record.name, record.value)
