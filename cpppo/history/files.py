"""History files: write ``(timestamp, name, value)`` records, read them back by time range.

The line format is described in the package docstring (:mod:`cpppo.history`).  ``parse_line``
is the sans-IO half (one line of text in, one ``Record`` out); ``HistoryWriter`` and
``HistoryReader`` add files, compression and line numbers.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from cpppo.history.playback import playback
from cpppo.history.times import TimestampError, timestamp

__all__ = ["FORMAT_VERSION", "HistoryError", "HistoryReader", "HistoryWriter", "Record", "format_line",
           "open_history", "parse_line", "read_history", "repair_tail"]

log = logging.getLogger(__package__)

FORMAT_VERSION = 1
HEADER = (f"# cpppo history v{FORMAT_VERSION}: <UTC timestamp> TAB <JSON name> TAB <JSON value>, "
          "one record a line")
CHUNK = 64 * 1024


class HistoryError(ValueError):
    """A history record or file that cannot be read; the message names the file and line."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = f"{path}:{line}: " if path is not None and line is not None else (
            f"{path}: " if path is not None else "")
        super().__init__(where + message)
        self.path, self.line = path, line


class Record(NamedTuple):
    """One history record: when, which (usually a tag name), and its JSON value."""

    timestamp: timestamp
    name: Any
    value: Any


def _timestamp(when: Any) -> timestamp:
    return when if isinstance(when, timestamp) else timestamp(when)


def format_line(when: Any, name: Any, value: Any, precision: int = 3) -> str:
    """The line (with its newline) for one record; ``when`` is anything ``timestamp`` accepts
    (None: now).  Raises TypeError if ``name`` or ``value`` is not JSON-serialisable."""
    try:
        fields = json.dumps(name), json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"History record {name!r} is not JSON-serialisable: {exc}") from None
    return f"{_timestamp(when).render(ms=precision)}\t{fields[0]}\t{fields[1]}\n"


def parse_line(text: str) -> Record | None:
    """The record on one line (without or with its newline); None for a blank or ``#`` comment
    line.  Raises HistoryError (without a location) for anything else that is not a record."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    fields = text.rstrip("\r\n").split("\t", 2)
    if len(fields) != 3:
        raise HistoryError(f"expected 3 tab-separated fields (timestamp, name, value), found "
                           f"{len(fields)} in {stripped[:80]!r}")
    try:
        when = timestamp(fields[0].strip())
    except TimestampError as exc:
        raise HistoryError(f"bad timestamp: {exc}") from None
    try:
        return Record(when, json.loads(fields[1]), json.loads(fields[2]))
    except ValueError as exc:
        raise HistoryError(f"bad JSON ({exc}) in {stripped[:80]!r}") from None


def open_history(path: str | Path, mode: str = "rb") -> IO[bytes]:
    """Open a history file in binary ``mode``, (de)compressing by suffix: ``.gz``, ``.bz2``,
    ``.xz``; any other name is a plain file."""
    name = str(path)
    if name.endswith(".gz"):
        return gzip.open(name, mode)  # type: ignore[return-value]
    if name.endswith(".bz2"):
        return bz2.open(name, mode)  # type: ignore[return-value]
    if name.endswith(".xz"):
        return lzma.open(name, mode)  # type: ignore[return-value]
    return open(name, mode)


def _last_newline_plain(path: Path) -> int | None:
    """The length to keep of a plain file whose last line has no newline (None: it is fine)."""
    with open(path, "rb") as stream:
        end = stream.seek(0, 2)
        if end == 0:
            return None
        stream.seek(end - 1)
        if stream.read(1) == b"\n":
            return None
        while end > 0:
            start = max(0, end - CHUNK)
            stream.seek(start)
            found = stream.read(end - start).rfind(b"\n")
            if found >= 0:
                return start + found + 1
            end = start
        return 0


def _last_newline_compressed(path: Path) -> tuple[int, int] | None:
    """(uncompressed length to keep, readable length) of a compressed file that stops short or
    whose last line has no newline (None: it is fine)."""
    total, keep, complete = 0, 0, True
    with open_history(path, "rb") as stream:
        try:
            while chunk := stream.read1(CHUNK):  # type: ignore[attr-defined]
                found = chunk.rfind(b"\n")
                if found >= 0:
                    keep = total + found + 1
                total += len(chunk)
        except EOFError:
            complete = False
        except (OSError, lzma.LZMAError, zlib.error) as exc:
            raise HistoryError(f"corrupt compressed data; not appending to it: {exc}", str(path)) from None
    return None if complete and keep == total else (keep, total)


def repair_tail(path: str | Path) -> int:
    """Cut a history file back to its last complete line, so that records appended after a
    crash mid-write do not join a partial line; returns the bytes (uncompressed) dropped.  A
    compressed file is checked by decompressing it, and rewritten if damaged."""
    path = Path(path)
    if not path.exists():
        return 0
    if not str(path).endswith((".gz", ".bz2", ".xz")):
        keep = _last_newline_plain(path)
        if keep is None:
            return 0
        with open(path, "rb+") as stream:
            dropped = stream.seek(0, 2) - keep
            stream.truncate(keep)
    else:
        found = _last_newline_compressed(path)
        if found is None:
            return 0
        keep, dropped = found[0], found[1] - found[0]
        spare = path.with_name(".repair-" + path.name)
        with open_history(path, "rb") as source, open_history(spare, "wb") as target:
            left = keep
            while left > 0:
                chunk = source.read1(min(CHUNK, left))  # type: ignore[attr-defined]
                if not chunk:
                    break
                target.write(chunk)
                left -= len(chunk)
        spare.replace(path)
    log.warning("%s: cut back to its last complete line, dropping %d bytes (a write was "
                "interrupted)", path, dropped)
    return dropped


class HistoryWriter:
    """Append records to a history file (created with its parent directories, and a header
    comment, if new).  Use as a context manager or call ``close()``.  Thread-safe.  An existing
    file whose last line was cut short by a crash is first cut back to its last complete line
    (``repair_tail``; a compressed file is decompressed to check it).

    ``flush`` (default) makes every record reach the OS (a gzip file is sync-flushed, so every
    complete line can be read back, even after a crash); turn it off for bulk writing.  bz2 and
    xz files are complete only once closed.  ``precision`` is the sub-second digits written (3:
    milliseconds, as upstream cpppo; up to 6).
    """

    def __init__(self, path: str | Path, *, flush: bool = True, precision: int = 3) -> None:
        if not 0 <= precision <= 6:
            raise ValueError(f"History precision must be 0-6 sub-second digits, not {precision!r}")
        self.path = Path(path)
        self.flush, self.precision = flush, precision
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = open_history(self.path, "ab")
        if new:
            self._append(HEADER + "\n")

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._file is None

    def _append(self, line: str) -> None:
        with self._lock:
            if self._file is None:
                raise ValueError(f"History file {self.path} is closed")
            self._file.write(line.encode("ascii"))
            if self.flush:
                self._file.flush()

    def write(self, when: Any, name: Any, value: Any) -> Record:
        """Append one record; ``when`` is a timestamp, epoch seconds, a time string, a datetime
        or None (now).  Returns the record as it will read back."""
        ts = _timestamp(when)
        self._append(format_line(ts, name, value, self.precision))
        return Record(ts, name, value)

    def comment(self, text: str) -> None:
        """Append a ``#`` comment line (readers skip it)."""
        self._append("# " + " ".join(text.splitlines()).encode("ascii", "backslashreplace").decode()
                     + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _numbered_lines(stream: IO[bytes], path: str) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number, line without newline, complete)``; the last line of a file that does not
    end in a newline, or whose compressed stream stops short, has ``complete`` False."""
    number, pending, cut_short = 0, b"", False
    while True:
        try:
            chunk = stream.read1(CHUNK)  # type: ignore[attr-defined]  # read() loses data on EOFError
        except EOFError:  # a compressed stream that ends early: a crash mid-write
            cut_short, chunk = True, b""
        except (OSError, lzma.LZMAError, zlib.error) as exc:
            raise HistoryError(f"corrupt data after line {number}: {exc}", path) from None
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            number += 1
            yield number, line, True
    if pending:
        yield number + 1, pending, False
    elif cut_short:
        log.warning("%s: compressed data ends early after line %d (a write was cut short?)",
                    path, number)


class HistoryReader:
    """Read a history file: ``for ts, name, value in HistoryReader(path)``, or ``.records(start,
    end)`` for a time range, or ``.playback(speed)`` to replay it in (scaled) time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self, start: Any = None, end: Any = None) -> Iterator[Record]:
        """Records with ``start <= timestamp < end`` (either may be None), in file order.

        Raises HistoryError naming the line for a corrupt line.  A final line cut short (no
        newline: the writer always ends a record with one) is skipped with a warning, even if
        it parses, as its value may be cut short; every earlier record is still read."""
        lo = None if start is None else _timestamp(start)
        hi = None if end is None else _timestamp(end)
        name = str(self.path)
        with open_history(self.path, "rb") as stream:
            for number, raw, complete in _numbered_lines(stream, name):
                if not complete:  # even if it parses, its value may be cut short ("12" of "125")
                    if raw.strip():
                        log.warning("%s:%d: skipping the final line, cut short with no newline (a "
                                    "write interrupted?): %r", name, number, raw[:80])
                    return
                try:
                    record = parse_line(raw.decode("utf-8"))
                except (HistoryError, UnicodeDecodeError) as exc:
                    raise HistoryError(str(exc), name, number) from None
                if record is None:
                    continue
                if (lo is None or record.timestamp >= lo) and (hi is None or record.timestamp < hi):
                    yield record

    def playback(self, speed: float | None = 1.0, start: Any = None, end: Any = None,
                 **pacing: Any) -> Iterator[Record]:
        """Replay ``records(start, end)`` at ``speed`` (see :func:`cpppo.history.playback`)."""
        return playback(self.records(start, end), speed, **pacing)


def read_history(path: str | Path, start: Any = None, end: Any = None) -> Iterator[Record]:
    """Records of the history file ``path`` with ``start <= timestamp < end``."""
    return HistoryReader(path).records(start, end)

