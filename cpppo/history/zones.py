"""Time zones for :mod:`cpppo.history`: the local zone, region look-up and abbreviations.

A time zone abbreviation such as ``MST`` or ``CEST`` is what people read and type, but it is not
a zone: ``IST`` is India (+05:30), Ireland (+01:00) and Israel (+02:00); ``CST`` is +08:00 in
China, -05:00 in Cuba and -06:00 in North America.  So abbreviations are only understood once
registered, and this module registers each one as **one fixed UTC offset** plus the zone it was
found in (used when an abbreviation is given as a zone to render in):

- The local zone's own abbreviations (``MST``/``MDT`` on a host in America/Edmonton) are always
  understood and win over any registered meaning.
- ``timestamp.support_abbreviations(region)`` adds the abbreviations of every zone in a region:
  a country code (``"CA"``, from the system's ``zone.tab``), a zone-name prefix (``"Europe"``,
  ``"America/Argentina"``) or one zone (``"Europe/Berlin"``).  Zones are scanned day by day over
  ``at`` +/- ``reach`` (default: now +/- half a year) for the names they use.
- Two zones may share an abbreviation only if it means the same offset in both (``MST`` is
  -07:00 in Edmonton and in Phoenix, whatever their DST rules).  A clash (``CST`` -06:00 vs
  +08:00) keeps the first meaning and logs a warning, or raises ``AmbiguousTimeZoneError`` when
  ``first=False``; nothing from that call is registered then.
- ``UTC``, ``GMT``, ``UT`` and ``Z`` always mean +00:00.

Because an abbreviation is a fixed offset, parsing one never has to guess: in the repeated hour
when DST ends, ``01:30 MDT`` (-06:00) and ``01:30 MST`` (-07:00) are different instants an hour
apart, which is exactly what the zone renders for them.  Numeric names that some zones use
(``-03``, ``+0530``) are parsed as offsets and need no registration.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo, ZoneInfoNotFoundError, available_timezones

__all__ = [
    "UTC",
    "Abbreviation",
    "AbbreviationRegistry",
    "AmbiguousTimeZoneError",
    "format_offset",
    "local_zone",
    "parse_numeric_offset",
    "zone_abbreviations",
    "zone_names",
]

log = logging.getLogger(__package__)

UNIVERSAL = ("UTC", "GMT", "UT", "Z")
NUMERIC_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hh>\d{2})(?::?(?P<mm>\d{2}))?$")
ABBREVIATION = re.compile(r"^[A-Z]{1,6}$")


class AmbiguousTimeZoneError(ValueError):
    """Zones in a region use one abbreviation for different UTC offsets."""


@dataclass(frozen=True)
class Abbreviation:
    """What one abbreviation means: a fixed UTC offset, whether it is a DST name, and the zone
    it was found in (the zone used when the abbreviation is given as a zone to render in)."""

    name: str
    offset: timedelta
    dst: bool
    zone: tzinfo


def local_zone() -> tzinfo:
    """The host's zone from ``tzlocal`` (which honours ``$TZ``); UTC if it cannot be found."""
    try:
        from tzlocal import get_localzone

        return get_localzone()
    except Exception as exc:  # tzlocal raises several types for a misconfigured host
        log.warning("Local time zone unknown (%s); using UTC", exc)
        return UTC


def parse_numeric_offset(text: str) -> timedelta | None:
    """``+05``, ``-0330``, ``+05:30`` as a timedelta; None if ``text`` is not of that form."""
    match = NUMERIC_OFFSET.match(text)
    if not match:
        return None
    hours, minutes = int(match["hh"]), int(match["mm"] or 0)
    if hours > 23 or minutes > 59:
        return None
    offset = timedelta(hours=hours, minutes=minutes)
    return -offset if match["sign"] == "-" else offset


def format_offset(offset: timedelta) -> str:
    """A UTC offset as ``+HHMM`` (``-0700``), the form ``%z`` gives and the parser accepts."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _country_zones() -> dict[str, list[str]]:
    """Country code -> zone names, in the order of the system's ``zone.tab``."""
    for directory in TZPATH:
        for name in ("zone.tab", "zone1970.tab"):
            path = Path(directory) / name
            if not path.is_file():
                continue
            table: dict[str, list[str]] = {}
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                fields = line.split("\t")
                for code in fields[0].split(","):
                    table.setdefault(code, []).append(fields[2])
            return table
    return {}


def _all_zones() -> list[str]:
    return sorted(z for z in available_timezones() if z not in ("localtime", "Factory"))


def zone_names(region: str | Iterable[str] | None) -> Iterator[str]:
    """The zone names of ``region``: a country code (``"CA"``), a zone-name prefix (``"Europe"``)
    or a zone name, or several of them.  Raises ValueError for a region that names no zone."""
    if region is None:
        return
    regions = [region] if isinstance(region, str) else list(region)
    countries: dict[str, list[str]] | None = None
    zones: list[str] | None = None
    for item in regions:
        if countries is None:
            countries, zones = _country_zones(), _all_zones()
        assert zones is not None
        if item in countries:
            yield from countries[item]
        elif item in zones:
            yield item
        else:
            prefix = item if item.endswith("/") else item + "/"
            found = [z for z in zones if z.startswith(prefix)]
            if not found:
                raise ValueError(f"Unknown time zone region {item!r}: not a country code, zone name "
                                 f"or zone-name prefix")
            yield from found


def zone_abbreviations(zone: tzinfo, at: datetime, reach: timedelta) -> dict[str, Abbreviation]:
    """The alphabetic abbreviations ``zone`` uses from ``at - reach`` to ``at + reach``, sampled
    daily.  A name the zone uses for two offsets in that span (so it cannot say which instant it
    means) is left out, with a log line."""
    found: dict[str, Abbreviation] = {}
    unusable: set[str] = set()
    instant, end = at - reach, at + reach
    while instant <= end:
        local = instant.astimezone(zone)
        name, offset = local.tzname() or "", local.utcoffset()
        instant += timedelta(days=1)
        if offset is None or not ABBREVIATION.match(name) or name in unusable:
            continue
        known = found.get(name)
        if known is None:
            found[name] = Abbreviation(name, offset, bool(local.dst()), zone)
        elif known.offset != offset:
            log.info("%s: abbreviation %s names both %s and %s; not usable", zone, name,
                     format_offset(known.offset), format_offset(offset))
            unusable.add(name)
            del found[name]
    return found


class AbbreviationRegistry:
    """Abbreviation -> :class:`Abbreviation`: the universal names, the local zone's names (which
    always win) and the names registered per region.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registered: dict[str, Abbreviation] = {}
        self._local: tuple[tzinfo, dict[str, Abbreviation]] | None = None

    def _local_names(self, local: tzinfo) -> dict[str, Abbreviation]:
        cached = self._local
        if cached is None or cached[0] is not local:
            now = datetime.now(UTC)
            cached = (local, zone_abbreviations(local, now, timedelta(days=366)))
            self._local = cached
        return cached[1]

    def lookup(self, name: str, local: tzinfo) -> Abbreviation | None:
        """What ``name`` means here, or None if it is not understood."""
        if name in UNIVERSAL:
            return Abbreviation(name, timedelta(0), False, UTC)
        with self._lock:
            return self._local_names(local).get(name) or self._registered.get(name)

    def registered(self) -> dict[str, Abbreviation]:
        """A copy of the abbreviations registered by region (not the local or universal ones)."""
        with self._lock:
            return dict(self._registered)

    def reset(self) -> None:
        with self._lock:
            self._registered = {}

    def support(self, region: str | Iterable[str] | None, *, exclude: str | Iterable[str] | None = None,
                at: datetime | None = None, reach: timedelta | None = None,
                first: bool = True) -> list[str]:
        """Register the abbreviations of ``region``'s zones; returns the names newly added.

        ``exclude`` lists zone names, regions or abbreviations to leave out.  A clash with a
        meaning already registered keeps the first meaning (and logs a warning) if ``first``,
        else raises AmbiguousTimeZoneError and registers nothing.
        """
        at = at or datetime.now(UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        reach = timedelta(days=183) if reach is None else reach
        excluded_items = [exclude] if isinstance(exclude, str) else list(exclude or [])
        excluded = set(excluded_items)
        for item in excluded_items:  # a region to leave out, or else an abbreviation
            try:
                excluded.update(zone_names(item))
            except ValueError:
                pass
        names = list(zone_names(region))  # resolve (and reject bad regions) before locking
        with self._lock:
            merged = dict(self._registered)
            clashes: list[str] = []
            for name in names:
                if name in excluded:
                    continue
                try:
                    zone = ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError) as exc:
                    raise ValueError(f"Unknown time zone {name!r}: {exc}") from exc
                for abbrev, meaning in zone_abbreviations(zone, at, reach).items():
                    if abbrev in excluded or abbrev in UNIVERSAL:
                        continue
                    known = merged.get(abbrev)
                    if known is None:
                        merged[abbrev] = meaning
                    elif known.offset != meaning.offset:
                        clashes.append(f"{abbrev} is {format_offset(meaning.offset)} in {name} but "
                                       f"{format_offset(known.offset)} in {known.zone}")
            if clashes and not first:
                raise AmbiguousTimeZoneError(f"Time zone region {region!r} is ambiguous: "
                                             + "; ".join(clashes))
            for clash in clashes:
                log.warning("Ignoring abbreviation: %s (first meaning kept)", clash)
            added = sorted(set(merged) - set(self._registered))
            self._registered = merged
            return added
