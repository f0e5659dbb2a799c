"""``timestamp``: an instant with microsecond resolution, rendered and compared to milliseconds.

A timestamp holds whole microseconds since the UNIX epoch (``.value`` gives float seconds).  It
renders in UTC by default (no zone suffix), or in any zone with that zone's abbreviation::

    >>> timestamp.support_abbreviations("America/Edmonton")
    ['MDT', 'MST']
    >>> ts = timestamp("2014-11-02 07:30:00 UTC")
    >>> ts.render("America/Edmonton")
    '2014-11-02 01:30:00.000 MDT'
    >>> (ts + 3600).render("America/Edmonton")          # the repeated hour, one hour later
    '2014-11-02 01:30:00.000 MST'
    >>> timestamp("2014-11-02 01:30:00.000 MST") - timestamp("2014-11-02 01:30:00.000 MDT")
    3600.0
    >>> timestamp.support_abbreviations(None, reset=True)
    []

Abbreviations are read as fixed UTC offsets (``MDT`` is -06:00, ``MST`` -07:00), so render ->
parse gives the same instant even in the ambiguous hour after DST ends; see
:mod:`cpppo.history.zones` for which abbreviations are understood (the local zone's always, others
after ``timestamp.support_abbreviations(region)``).  A rendered abbreviation that would be read
as a different offset here (``CST`` of China while ``CST`` means -06:00) is written as a numeric
offset (``+0800``) instead, so a rendering is never misread.  Local times given with a zone
*name* (``America/Edmonton``) that are ambiguous or do not exist raise ``TimestampError``.

Comparisons are made on the value rounded to milliseconds (``_precision``), so two timestamps
are equal exactly when their default renderings are equal; subtracting timestamps gives float
seconds; adding or subtracting seconds (or a ``timedelta``) gives a new timestamp.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cpppo.history.zones import (
    ABBREVIATION,
    UTC,
    AbbreviationRegistry,
    format_offset,
    local_zone,
    parse_numeric_offset,
)
from cpppo.timing import wall

__all__ = ["TimestampError", "timestamp"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
UTC_KEYS = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu",
                      "Etc/Zulu"})
FORMAT = "YYYY-MM-DD HH:MM:SS[.ffffff] [zone]"
TIMESTAMP = re.compile(r"""
    ^\s*(?P<Y>\d{4})-(?P<M>\d{1,2})-(?P<D>\d{1,2})
    (?:T|\s+)(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?
    \s*(?P<zone>[+-]\d{2}(?::?\d{2})?|[A-Za-z][\w/+-]*)?\s*$""", re.VERBOSE)

Seconds = int | float | timedelta


class TimestampError(ValueError):
    """A time that cannot be parsed or placed: bad format, unknown zone or abbreviation, or a
    local time that is ambiguous or does not exist in the zone named."""


def _is_utc(zone: tzinfo) -> bool:
    return zone == UTC or getattr(zone, "key", None) in UTC_KEYS


def _seconds_to_us(seconds: Seconds) -> int:
    if isinstance(seconds, timedelta):
        return seconds // ONE_US
    return round(seconds * 1_000_000)


class timestamp:  # noqa: N801 -- the public name upstream cpppo users import
    """An instant: ``timestamp()`` (now), ``timestamp(seconds)``, ``timestamp("2014-04-01
    12:34:56.789 MST")``, ``timestamp(datetime)`` or a copy of another timestamp.  A string
    without a zone is read in ``tzinfo`` (default UTC)."""

    UTC: tzinfo = UTC
    LOC: tzinfo = local_zone()  # from $TZ or the host; tests may set it
    _precision = 3  # digits after the second rendered and compared by default
    _abbreviations = AbbreviationRegistry()
    __hash__ = None  # type: ignore[assignment]  # mutable (+=, .utc = ...), like upstream's

    def __init__(self, value: Any = None, tzinfo: tzinfo | str | None = None) -> None:
        self._str: str | None = None
        if value is None:
            self._us = _seconds_to_us(wall())
        elif isinstance(value, timestamp):
            self._us, self._str = value._us, value._str
        elif isinstance(value, str):
            self._us = self.number_from_datetime_us(self.datetime_from_string(value, tzinfo))
        elif isinstance(value, datetime):
            self._us = self.number_from_datetime_us(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._us = _seconds_to_us(value)
        else:
            raise TypeError(f"Cannot make a timestamp from {type(value).__name__} {value!r}")

    # -- zones and abbreviations --------------------------------------------------------------

    @classmethod
    def support_abbreviations(cls, region: Any, exclude: Any = None, at: datetime | None = None,
                              reach: timedelta | None = None, reset: bool = False,
                              first: bool = True) -> list[str]:
        """Understand the abbreviations of every zone in ``region`` (a country code like ``"CA"``,
        a prefix like ``"Europe"``, a zone name, or a list of them); returns the names added.
        ``reset`` forgets earlier registrations first.  See :mod:`cpppo.history.zones`."""
        if reset:
            cls._abbreviations.reset()
        return cls._abbreviations.support(region, exclude=exclude, at=at, reach=reach, first=first)

    @classmethod
    def timezone_info(cls, zone: tzinfo | str) -> tuple[tzinfo, bool | None]:
        """``(tzinfo, is_dst)`` for a tzinfo, an abbreviation (``is_dst`` True/False: the zone it
        was found in) or a zone name (``is_dst`` None)."""
        if isinstance(zone, tzinfo):
            return zone, None
        if ABBREVIATION.match(zone):
            meaning = cls._abbreviations.lookup(zone, cls.LOC)
            if meaning is not None:
                return meaning.zone, meaning.dst
        try:
            return ZoneInfo(zone), None
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise TimestampError(f"Unknown time zone {zone!r}") from exc

    @classmethod
    def _parse_zone(cls, token: str) -> tzinfo:
        """The zone a parsed time names: abbreviation or numeric offset (fixed), or zone name."""
        if ABBREVIATION.match(token):
            meaning = cls._abbreviations.lookup(token, cls.LOC)
            if meaning is None:
                raise TimestampError(f"unknown time zone abbreviation {token!r}; register its region "
                                     f"with timestamp.support_abbreviations(...) or use a zone name")
            return timezone(meaning.offset, token)
        offset = parse_numeric_offset(token)
        if offset is not None:
            return timezone(offset)
        if token[0] in "+-":
            raise TimestampError(f"invalid UTC offset {token!r}")
        try:
            return ZoneInfo(token)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise TimestampError(f"unknown time zone {token!r}") from exc

    # -- conversions ---------------------------------------------------------------------------

    @staticmethod
    def _place(naive: datetime, zone: tzinfo) -> datetime:
        """``naive`` wall time in ``zone``; raises if that zone repeats or skips it."""
        early, late = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
        if early.utcoffset() == late.utcoffset():
            return early
        back = early.astimezone(UTC).astimezone(zone).replace(tzinfo=None, fold=0)
        if back != naive:
            raise TimestampError(f"{naive} does not exist in {zone} (skipped by a clock change)")
        raise TimestampError(f"{naive} is ambiguous in {zone} (it is both {early.tzname()} and "
                             f"{late.tzname()}); give the abbreviation instead of the zone name")

    @classmethod
    def datetime_from_string(cls, text: str, tzinfo: tzinfo | str | None = None) -> datetime:
        """Parse ``YYYY-MM-DD HH:MM:SS[.ffffff] [zone]``; the zone is an abbreviation (``MST``),
        a numeric offset (``-0700``) or a zone name; without one, ``tzinfo`` (default UTC)."""
        match = TIMESTAMP.match(text) if isinstance(text, str) else None
        if not match:
            raise TimestampError(f"Invalid timestamp {text!r}; expected {FORMAT}")
        try:
            fraction = match["f"] or "0"
            micro = round(int(fraction) * 10 ** (6 - len(fraction)))
            naive = datetime(int(match["Y"]), int(match["M"]), int(match["D"]), int(match["h"]),
                             int(match["m"]), int(match["s"])) + timedelta(microseconds=micro)
            if match["zone"]:
                zone = cls._parse_zone(match["zone"])
            elif tzinfo is None:
                zone = UTC
            elif isinstance(tzinfo, str):
                zone = cls._parse_zone(tzinfo)
            else:
                zone = tzinfo
            return cls._place(naive, zone)
        except (TimestampError, ValueError, OverflowError) as exc:
            raise TimestampError(f"Invalid timestamp {text!r}: {exc}") from None

    @staticmethod
    def number_from_datetime_us(dt: datetime) -> int:
        """Microseconds since the epoch of an aware datetime (a naive one is taken as UTC)."""
        if dt.tzinfo is None or dt.utcoffset() is None:
            dt = dt.replace(tzinfo=UTC)
        return (dt - EPOCH) // ONE_US

    @classmethod
    def number_from_datetime(cls, dt: datetime) -> float:
        """Seconds since the epoch of an aware datetime (a naive one is taken as UTC)."""
        return cls.number_from_datetime_us(dt) / 1_000_000

    def to_datetime(self, tzinfo: tzinfo | str | None = None) -> datetime:
        """This instant as an aware datetime in ``tzinfo`` (default UTC)."""
        return self._datetime(self._us, tzinfo)

    @classmethod
    def _datetime(cls, micro: int, tzinfo: tzinfo | str | None) -> datetime:
        zone = UTC if tzinfo is None else cls.timezone_info(tzinfo)[0]
        return (EPOCH + timedelta(microseconds=micro)).astimezone(zone)

    # -- rendering -----------------------------------------------------------------------------

    def _abbreviation(self, dt: datetime) -> str:
        """The zone name to print for ``dt``: its abbreviation when that would be read back as
        the same offset (or is not understood here at all), else the numeric offset."""
        name, offset = dt.tzname() or "", dt.utcoffset() or timedelta(0)
        if ABBREVIATION.match(name):
            meaning = self._abbreviations.lookup(name, self.LOC)
            if meaning is None or meaning.offset == offset:
                return name
        elif parse_numeric_offset(name) == offset:
            return name
        return format_offset(offset)

    def render(self, tzinfo: tzinfo | str | None = None, ms: bool | int = True,
               tzdetail: bool | None = None) -> str:
        """The time in ``tzinfo`` (default UTC) with ``ms`` sub-second digits (True: 3, False:
        none, or 0-6), rounded.  Outside UTC an abbreviation follows; ``tzdetail`` truthy gives
        the zone name instead, falsy (not None) a numeric offset such as ``-0700``."""
        digits = self._precision if ms is True else int(ms) if ms else 0
        if not 0 <= digits <= 6:
            raise ValueError(f"Invalid sub-second precision {ms!r}; must be 0-6 digits")
        unit = 10 ** (6 - digits)
        dt = self._datetime((self._us + unit // 2) // unit * unit, tzinfo)
        text = (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} "
                f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}")
        if digits:
            text += "." + f"{dt.microsecond:06d}"[:digits]
        zone = dt.tzinfo or UTC
        if tzdetail is None:
            if not _is_utc(zone):
                text += " " + self._abbreviation(dt)
        elif tzdetail and getattr(zone, "key", None):
            text += " " + zone.key  # type: ignore[attr-defined]
        else:
            text += format_offset(dt.utcoffset() or timedelta(0))
        return text

    def __str__(self) -> str:
        if self._str is None:
            self._str = self.render()
        return self._str

    def __repr__(self) -> str:
        return f"<{self} =~= {self.value:.6f}>"

    # -- values --------------------------------------------------------------------------------

    @property
    def value(self) -> float:
        """Seconds since the epoch (float; the instant is held in whole microseconds)."""
        return self._us / 1_000_000

    @value.setter
    def value(self, seconds: float) -> None:
        self._us, self._str = _seconds_to_us(seconds), None

    @property
    def utc(self) -> str:
        """The UTC rendering (milliseconds); assign a time string (default zone UTC) to change."""
        return str(self)

    @utc.setter
    def utc(self, text: str) -> None:
        self._us, self._str = self.number_from_datetime_us(self.datetime_from_string(text)), None

    @property
    def local(self) -> str:
        """The local rendering (whole seconds, with abbreviation); assign a time string (default
        zone: the local zone) to change."""
        return self.render(tzinfo=self.LOC, ms=False)

    @local.setter
    def local(self, text: str) -> None:
        dt = self.datetime_from_string(text, self.LOC)
        self._us, self._str = self.number_from_datetime_us(dt), None

    def __float__(self) -> float:
        return self.value

    def __int__(self) -> int:
        return int(self.value)

    # -- comparison (to _precision digits) and arithmetic (in seconds) ---------------------------

    def _key(self) -> int:
        unit = 10 ** (6 - self._precision)
        return (self._us + unit // 2) // unit

    def _other_key(self, other: Any) -> int | None:
        if isinstance(other, timestamp):
            return other._key()
        if isinstance(other, int | float) and not isinstance(other, bool):
            return timestamp(other)._key()
        return None

    def __eq__(self, other: object) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is None else self._key() == key

    def __lt__(self, other: Any) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is None else self._key() < key

    def __le__(self, other: Any) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is None else self._key() <= key

    def __gt__(self, other: Any) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is None else self._key() > key

    def __ge__(self, other: Any) -> bool:
        key = self._other_key(other)
        return NotImplemented if key is None else self._key() >= key

    def _shifted(self, micro: int) -> timestamp:
        result = timestamp(self)
        result._us, result._str = self._us + micro, None
        return result

    def __add__(self, seconds: Seconds) -> timestamp:
        if not isinstance(seconds, int | float | timedelta):
            return NotImplemented
        return self._shifted(_seconds_to_us(seconds))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        if isinstance(other, timestamp):
            return (self._us - other._us) / 1_000_000
        if not isinstance(other, int | float | timedelta):
            return NotImplemented
        return self._shifted(-_seconds_to_us(other))

    def __iadd__(self, seconds: Seconds) -> timestamp:
        self._us, self._str = self._us + _seconds_to_us(seconds), None
        return self

    def __isub__(self, seconds: Seconds) -> timestamp:
        self._us, self._str = self._us - _seconds_to_us(seconds), None
        return self
