"""cpppo.history files: the line format, writing, reading by time range, bad and truncated input."""

from __future__ import annotations

import gzip
import logging
import math
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpppo.history import (
    HistoryError,
    HistoryReader,
    HistoryWriter,
    Record,
    format_line,
    open_history,
    parse_line,
    read_history,
    repair_tail,
    timestamp,
)

T0 = 1405461824.186  # 2014-07-15 22:03:44.186 UTC
VALUES = [0, -7, 2.5, "text\twith\ttabs\nand newline", True, None, [0, 1, 2, 3], {"write": [1, 2]},
          ["nested", [1.25, {"a": None}]], "ünïcødé ☃"]


def write_records(path: Path, count: int = 10, **options) -> list[Record]:
    with HistoryWriter(path, **options) as history:
        return [history.write(T0 + i * 0.5, f"Tag_{i % 3}", VALUES[i % len(VALUES)]) for i in range(count)]


@pytest.mark.parametrize("suffix", [".hst", ".hst.gz", ".hst.bz2", ".hst.xz"])
def test_write_then_read_every_json_kind(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "sub" / ("plant" + suffix)  # the directory is created
    written = write_records(path, count=len(VALUES) * 2)
    read = list(read_history(path))
    assert read == written
    assert [tuple(r) for r in read] == [tuple(r) for r in written]
    ts, name, value = read[1]
    assert (str(ts), name, value) == ("2014-07-15 22:03:44.686", "Tag_1", -7)


def test_the_file_is_the_documented_line_format(tmp_path: Path) -> None:
    path = tmp_path / "plant.hst"
    with HistoryWriter(path) as history:
        history.write(T0, "Tag_Name", [0, 1, 2, 3])
        history.comment("Started recording\nTag: Tag_Name")
        history.write(T0 + 1, ["Tag_Name", [0, 3]], {"write": [0]})
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# cpppo history v1:")
    assert lines[1:] == [
        '2014-07-15 22:03:44.186\t"Tag_Name"\t[0, 1, 2, 3]',
        "# Started recording Tag: Tag_Name",
        '2014-07-15 22:03:45.186\t["Tag_Name", [0, 3]]\t{"write": [0]}',
    ]


def test_append_keeps_earlier_records_and_one_header(tmp_path: Path) -> None:
    for suffix in (".hst", ".hst.gz"):
        path = tmp_path / ("append" + suffix)
        first = write_records(path, count=3)
        second = write_records(path, count=2)
        assert list(read_history(path)) == first + second
        with open_history(path) as stream:
            assert stream.read().count(b"# cpppo history") == 1


def test_precision_and_timestamp_forms(tmp_path: Path) -> None:
    path = tmp_path / "precise.hst"
    with HistoryWriter(path, precision=6) as history:
        history.write(timestamp(T0 + 0.000123), "a", 1)
        history.write("2014-07-15 16:03:44.186 -0600", "b", 2)
        history.write(None, "c", 3)
    a, b, c = read_history(path)
    with pytest.raises(ValueError, match="precision must be 0-6"):
        HistoryWriter(tmp_path / "never.hst", precision=7)
    assert not (tmp_path / "never.hst").exists()
    assert a.timestamp.render(ms=6) == "2014-07-15 22:03:44.186123"
    assert b.timestamp == timestamp(T0)
    assert c.timestamp > b.timestamp


def test_time_range_is_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "range.hst.gz"
    written = write_records(path, count=10)  # T0, T0+0.5, ... T0+4.5
    assert list(read_history(path, start=T0 + 1, end=T0 + 3)) == written[2:6]
    assert list(read_history(path, start="2014-07-15 22:03:48.186")) == written[8:]
    assert list(HistoryReader(path).records(end=timestamp(T0 + 0.5))) == written[:1]
    assert list(read_history(path, start=T0 + 100)) == []


def test_nan_and_infinity_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nan.hst"
    with HistoryWriter(path) as history:
        history.write(T0, "REAL", [math.nan, math.inf, -math.inf])
    (record,) = read_history(path)
    assert math.isnan(record.value[0]) and record.value[1:] == [math.inf, -math.inf]


def test_unserialisable_value_is_refused_and_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "bad.hst"
    with HistoryWriter(path) as history:
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            history.write(T0, "Tag", {1, 2})
        history.write(T0, "Tag", 1)
    assert [r.value for r in read_history(path)] == [1]
    with pytest.raises(ValueError, match="closed"):
        history.write(T0, "Tag", 2)
    assert history.closed


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "threads.hst"
    with HistoryWriter(path) as history:
        def worker(n: int) -> None:
            for i in range(200):
                history.write(T0 + i, f"Tag_{n}", list(range(n * 10)))
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    records = list(read_history(path))
    assert len(records) == 800
    assert all(r.value == list(range(int(r.name[4:]) * 10)) for r in records)


# -- bad and truncated input -------------------------------------------------------------------

GOOD = '2014-07-15 22:03:44.186\t"Tag"\t1\n'


@pytest.mark.parametrize(("bad", "reason"), [
    ('2014-07-15 25:03:44.186\t"Tag"\t1\n', "bad timestamp: Invalid timestamp '2014-07-15 25:03:44.186'"),
    ('yesterday\t"Tag"\t1\n', "bad timestamp"),
    ('2014-07-15 22:03:44.186\t"Tag"\t[1, 2\n', "bad JSON"),
    ('2014-07-15 22:03:44.186\tTag\t1\n', "bad JSON"),
    ('2014-07-15 22:03:44.186 "Tag" 1\n', "expected 3 tab-separated fields"),
    (b"\xff\xfe\t\n", "utf-8"),
])
def test_a_corrupt_line_is_one_error_naming_the_line(tmp_path: Path, bad, reason: str) -> None:
    path = tmp_path / "corrupt.hst"
    bad_bytes = bad if isinstance(bad, bytes) else bad.encode()
    path.write_bytes(("# header\n" + GOOD + "\n").encode() + bad_bytes + GOOD.encode())
    records = HistoryReader(path).records()
    assert next(records).value == 1  # records before the bad line are delivered
    with pytest.raises(HistoryError) as caught:
        next(records)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: ") and reason in message and "\n" not in message
    assert (caught.value.path, caught.value.line) == (str(path), 4)
    assert isinstance(caught.value, ValueError)


def test_a_corrupt_final_line_with_its_newline_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.hst"
    path.write_text(GOOD + '2014-07-15 22:03:44.186\t"Tag"\t[1,\n')
    with pytest.raises(HistoryError, match=r":2: bad JSON"):
        list(read_history(path))


@pytest.mark.parametrize("tail", ['2014-07-15 22:03:4', '2014-07-15 22:03:45.000\t"Tag"\t12', "2"])
def test_a_truncated_final_line_is_skipped_with_a_warning(tmp_path: Path, caplog, tail: str) -> None:
    path = tmp_path / "crashed.hst"
    path.write_text(GOOD * 3 + tail)  # "12" may be the start of "125": never trusted
    with caplog.at_level(logging.WARNING, logger="cpppo.history"):
        records = list(read_history(path))
    assert [r.value for r in records] == [1, 1, 1]
    assert f"{path}:4: skipping the final line, cut short" in caplog.text


def test_truncated_gzip_reads_every_complete_record(tmp_path: Path, caplog) -> None:
    path = tmp_path / "crashed.hst.gz"
    written = write_records(path, count=40)
    data = path.read_bytes()
    cut = tmp_path / "cut.hst.gz"
    counts = []
    for size in range(len(data) - 1, len(data) // 3, -7):
        cut.write_bytes(data[:size])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cpppo.history"):
            records = list(read_history(cut))
        assert records == written[:len(records)], size  # a prefix: never a damaged record
        assert "cut short" in caplog.text or "ends early" in caplog.text
        counts.append(len(records))
    assert counts[0] == len(written) and counts == sorted(counts, reverse=True) and counts[-1] > 0


def test_appending_after_a_crash_cuts_the_partial_line_first(tmp_path: Path, caplog) -> None:
    path = tmp_path / "crashed.hst"
    path.write_text("# header\n" + GOOD * 2 + '2014-07-15 22:03:45.000\t"Ta')
    with caplog.at_level(logging.WARNING, logger="cpppo.history"), HistoryWriter(path) as history:
        history.write(T0 + 9, "New", 2)
    assert [r.value for r in read_history(path)] == [1, 1, 2]
    assert "cut back to its last complete line, dropping 27 bytes" in caplog.text
    assert repair_tail(path) == 0 and repair_tail(tmp_path / "missing.hst") == 0


@pytest.mark.parametrize("suffix", [".hst.gz", ".hst.xz"])
def test_appending_to_a_cut_compressed_file_keeps_its_complete_records(tmp_path: Path, suffix) -> None:
    path = tmp_path / ("crashed" + suffix)
    written = write_records(path, count=30)
    data = path.read_bytes()
    for size in (len(data) - 3, len(data) * 2 // 3):
        path.write_bytes(data[:size])
        kept = list(read_history(path))
        with HistoryWriter(path) as history:
            added = history.write(T0 + 100, "New", "after the crash")
        assert list(read_history(path)) == [*kept, added]
        assert kept == written[:len(kept)]
    assert repair_tail(path) == 0


def test_corrupt_compressed_data_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.hst.gz"
    path.write_bytes(gzip.compress(GOOD.encode())[:20] + b"\x00garbage" * 20)
    with pytest.raises(HistoryError, match=r"garbage.hst.gz: corrupt data after line 0"):
        list(read_history(path))


def test_upstream_logger_lines_read_back() -> None:
    record = parse_line('2014-07-15 22:03:44.186\t["Tag_Name", [0, 3]]\t{"write": [0, 1, 2, 3]}\n')
    assert record == (timestamp("2014-07-15 22:03:44.186"), ["Tag_Name", [0, 3]], {"write": [0, 1, 2, 3]})
    assert parse_line("   # a comment\n") is None and parse_line("\n") is None
    assert parse_line('2014-07-15 16:03:44.186 -0600\t"T"\t1').timestamp == timestamp(T0)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(micro=st.integers(0, 4102444800 * 10**6), name=st.text() | st.lists(st.text(), max_size=3),
       value=JSON)
def test_format_parse_round_trip(micro: int, name, value) -> None:
    line = format_line(micro / 10**6, name, value, precision=6)
    assert line.endswith("\n") and line.count("\n") == 1 and line.count("\t") == 2 and line.isascii()
    record = parse_line(line)
    assert record is not None
    assert record.timestamp.render(ms=6) == timestamp(micro / 10**6).render(ms=6)
    assert (record.name, record.value) == (name, value)
