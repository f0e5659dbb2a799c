"""cpppo.history: high-precision timestamps, and time series recording and playback.

Timestamps (:mod:`cpppo.history.times`, zones in :mod:`cpppo.history.zones`)::

    from cpppo.history import timestamp
    ts = timestamp()                                # now; or seconds, a string, a datetime
    ts.render()                                     # '2014-04-01 18:34:56.789' (UTC, ms)
    ts.render("America/Edmonton")                   # '2014-04-01 12:34:56.789 MDT'
    timestamp("2014-04-01 12:34:56.789 MDT") == ts  # compared to the millisecond

Recording and playback (:mod:`cpppo.history.files`, :mod:`cpppo.history.playback`)::

    from cpppo.history import HistoryWriter, HistoryReader, read_history, playback
    with HistoryWriter("plant.hst.gz") as history:  # appends; creates the file and directories
        history.write(None, "Tag_Name", [0, 1, 2, 3])   # None: now; or any timestamp() input
    for ts, name, value in read_history("plant.hst.gz", start="2014-04-01 00:00:00"):
        ...
    for ts, name, value in HistoryReader("plant.hst.gz").playback(speed=10.0):
        ...                                         # paced at 10x; speed=None: no waiting

History file format, version 1
------------------------------

A UTF-8 (in practice ASCII) text file of lines ending in ``\\n``; one record a line, appended in
the order written (so usually, but not necessarily, in time order).  A line whose first non-blank
character is ``#`` is a comment and blank lines are ignored; a new file starts with a ``#`` header
naming the format.  A record is three fields separated by single TAB characters::

    2014-07-15 22:03:44.186<TAB>"Tag_Name"<TAB>[0, 1, 2, 3]

1. the time, ``YYYY-MM-DD HH:MM:SS.fff`` in UTC (milliseconds by default; the writer's
   ``precision`` gives up to 6 digits).  Readers accept anything ``timestamp`` parses, so a
   time with a zone (``2014-07-15 16:03:44.186 MDT``) is read correctly too;
2. the name, as JSON: normally a string (the tag name), any JSON value is allowed (upstream
   cpppo's historize writes ``["Tag_Name", [0, 3]]``);
3. the value, as JSON: a number, string, boolean, null, list or object.  Non-finite floats are
   written as Python's ``json`` writes them (``NaN``, ``Infinity``) and read back as such.

JSON never contains a raw TAB or newline (they are escaped inside strings), so the fields split
unambiguously.  Upstream cpppo's ``logger`` files (``<time> TAB <JSON serial> TAB <JSON data>``)
have the same shape and read back with the serial as the name.

A file named ``*.gz``, ``*.bz2`` or ``*.xz`` is compressed; appending to a gzip file adds a gzip
member, which readers handle.  The writer flushes each record by default (gzip: a sync flush), so
a crash loses at most the line being written.

Reading: a line that is not a comment, blank, or a valid record raises ``HistoryError`` naming
the file and line.  The one exception is a final line cut short by a crash mid-write: a last
line with no newline (even one that parses: ``12`` may be the start of ``125``) is skipped with
a logged warning, as is the tail of a compressed stream that stops early; every earlier record
is still read.  ``HistoryWriter`` cuts such a partial line off before it appends (``repair_tail``),
so new records never join it.
"""

from __future__ import annotations

from cpppo.history.files import (
    FORMAT_VERSION,
    HistoryError,
    HistoryReader,
    HistoryWriter,
    Record,
    format_line,
    open_history,
    parse_line,
    read_history,
    repair_tail,
)
from cpppo.history.playback import Pacer, aplayback, playback
from cpppo.history.times import TimestampError, timestamp
from cpppo.history.zones import AmbiguousTimeZoneError, zone_names

__all__ = [
    "FORMAT_VERSION",
    "AmbiguousTimeZoneError",
    "HistoryError",
    "HistoryReader",
    "HistoryWriter",
    "Pacer",
    "Record",
    "TimestampError",
    "aplayback",
    "format_line",
    "open_history",
    "parse_line",
    "playback",
    "read_history",
    "repair_tail",
    "timestamp",
    "zone_names",
]
