"""cpppo.history.timestamp: resolution, rendering, parsing, zones, comparison and arithmetic.

Every test sets the zones it uses (``local`` fixture) and gets a fresh abbreviation registry,
so nothing depends on the machine's zone or on test order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpppo.history import AmbiguousTimeZoneError, TimestampError, timestamp, zone_names
from cpppo.history.zones import AbbreviationRegistry, zone_abbreviations
from cpppo.timing import wall

EDMONTON, BERLIN = ZoneInfo("America/Edmonton"), ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timestamp, "_abbreviations", AbbreviationRegistry())
    monkeypatch.setattr(timestamp, "LOC", UTC)


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch):
    """Set the local zone: ``local("America/Edmonton")``."""
    def set_zone(name: str) -> ZoneInfo:
        zone = ZoneInfo(name)
        monkeypatch.setattr(timestamp, "LOC", zone)
        return zone
    return set_zone


def utc(text: str) -> timestamp:
    return timestamp(text + " UTC")


# -- resolution and rendering ------------------------------------------------------------------

def test_microsecond_resolution_rendered_to_milliseconds_by_default() -> None:
    ts = timestamp(1399326141.999836)
    assert ts.value == 1399326141.999836
    assert ts.render(ms=6) == "2014-05-05 21:42:21.999836"
    assert str(ts) == ts.utc == "2014-05-05 21:42:22.000"  # rounds into the next second
    assert ts.render(ms=False) == "2014-05-05 21:42:22"
    assert ts.render(ms=1) == "2014-05-05 21:42:22.0"
    assert repr(ts) == "<2014-05-05 21:42:22.000 =~= 1399326141.999836>"
    assert float(ts) == ts.value and int(ts) == 1399326141


@pytest.mark.parametrize(("value", "text"), [
    (1414915323.122, "2014-11-02 08:02:03.122"),
    (1414915323.123, "2014-11-02 08:02:03.123"),
    (1414915323.125, "2014-11-02 08:02:03.125"),
    (1414915323.126, "2014-11-02 08:02:03.126"),
    (0, "1970-01-01 00:00:00.000"),
    (-0.0005, "1970-01-01 00:00:00.000"),
    (-1.25, "1969-12-31 23:59:58.750"),
])
def test_render_rounds_float_noise_away(value: float, text: str) -> None:
    assert timestamp(value).render() == text
    assert timestamp(text) == timestamp(value)


def test_render_precision_is_checked() -> None:
    with pytest.raises(ValueError, match="0-6 digits"):
        timestamp(0).render(ms=7)


def test_constructors() -> None:
    aware = datetime(2014, 4, 1, 12, 34, 56, 789000, tzinfo=EDMONTON)
    assert timestamp(aware).render(ms=6) == "2014-04-01 18:34:56.789000"
    assert timestamp(datetime(2014, 4, 1, 18, 34, 56)).render() == "2014-04-01 18:34:56.000"  # naive: UTC
    copy = timestamp(timestamp(5.5))
    assert copy.value == 5.5
    assert timestamp("2014-04-01 12:34:56", tzinfo="America/Edmonton").render() == "2014-04-01 18:34:56.000"
    before = wall()
    now = timestamp()
    assert before - 0.001 <= now.value <= wall() + 0.001
    assert timestamp(aware).to_datetime(EDMONTON) == aware
    with pytest.raises(TypeError):
        timestamp([1, 2])
    with pytest.raises(TypeError):
        timestamp(True)


# -- parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("2014-04-01 18:34:56.789", 1396377296.789),
    ("2014-04-01T18:34:56.789Z", 1396377296.789),
    ("2014-04-01 18:34:56,789 UTC", 1396377296.789),
    ("  2014-04-01 18:34:56.789 GMT  ", 1396377296.789),
    ("2014-04-01 12:34:56.789 -0600", 1396377296.789),
    ("2014-04-01 12:34:56.789-06:00", 1396377296.789),
    ("2014-04-02 00:04:56.789 +05:30", 1396377296.789),
    ("2014-04-01 12:34:56.789 America/Edmonton", 1396377296.789),
    ("2014-04-01 18:34:56.7891234", 1396377296.789123),
    ("2014-04-01 18:34:56", 1396377296.0),
])
def test_parse_formats(text: str, seconds: float) -> None:
    assert timestamp(text).value == pytest.approx(seconds, abs=1e-6)


def test_parse_the_spec_example_with_a_registered_abbreviation() -> None:
    timestamp.support_abbreviations("CA")
    assert timestamp("2014-04-01 12:34:56.789 MST").render() == "2014-04-01 19:34:56.789"
    assert timestamp("2014-04-01 12:34:56.789 MDT").render() == "2014-04-01 18:34:56.789"


@pytest.mark.parametrize(("text", "reason"), [
    ("nonsense", "expected YYYY-MM-DD HH:MM:SS"),
    ("2014-04-01 12:34", "expected YYYY-MM-DD HH:MM:SS"),
    ("2014-13-01 12:34:56", "month must be in 1..12"),
    ("2014-02-30 12:34:56", "day is out of range"),
    ("2014-04-01 25:34:56", "hour must be in 0..23"),
    ("2014-04-01 12:34:56 XYZT", "unknown time zone abbreviation 'XYZT'"),
    ("2014-04-01 12:34:56 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("2014-04-01 12:34:56 +2500", "invalid UTC offset '+2500'"),
    ("2014-04-01 12:34:56 ☃", "expected YYYY-MM-DD HH:MM:SS"),
])
def test_unparseable_timestamp_is_one_clear_error(text: str, reason: str) -> None:
    with pytest.raises(TimestampError, match="Invalid timestamp") as caught:
        timestamp(text)
    message = str(caught.value)
    assert repr(text) in message and reason in message and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_zone_name_refuses_ambiguous_and_skipped_local_times() -> None:
    with pytest.raises(TimestampError, match=r"ambiguous in America/Edmonton \(it is both MDT and MST\)"):
        timestamp("2014-11-02 01:30:00 America/Edmonton")
    with pytest.raises(TimestampError, match="does not exist in America/Edmonton"):
        timestamp("2014-03-09 02:30:00 America/Edmonton")


# -- the local zone and DST round trips ----------------------------------------------------------

def test_local_zone_abbreviations_need_no_registration(local) -> None:
    local("America/Edmonton")
    ts = utc("2014-07-01 18:00:00")
    assert ts.local == "2014-07-01 12:00:00 MDT"
    assert timestamp("2014-07-01 12:00:00 MDT") == ts
    assert timestamp("2014-07-01 11:00:00 MST") == ts  # an abbreviation is a fixed offset
    ts.local = "2014-12-25 08:00:00"
    assert ts.utc == "2014-12-25 15:00:00.000"
    ts.utc = "2014-12-25 08:00:00 MST"
    assert ts.render(EDMONTON) == "2014-12-25 08:00:00.000 MST"
    assert timestamp.support_abbreviations(None) == []  # the local names are not "registered"


def test_fall_back_hour_renders_distinct_abbreviations(local) -> None:
    local("America/Edmonton")
    assert utc("2014-11-02 07:30:00").local == "2014-11-02 01:30:00 MDT"
    assert utc("2014-11-02 08:30:00").local == "2014-11-02 01:30:00 MST"
    assert timestamp("2014-11-02 01:30:00 MST") - timestamp("2014-11-02 01:30:00 MDT") == 3600.0
    with pytest.raises(TimestampError, match="ambiguous"):
        timestamp(0).local = "2014-11-02 01:30:00"  # local time with no abbreviation


@pytest.mark.parametrize(("zone", "start"), [
    ("America/Edmonton", "2014-11-02 06:00:00"),  # fall back: 01:00-02:00 MDT, then MST
    ("America/Edmonton", "2014-03-09 07:00:00"),  # spring forward: 02:00-03:00 skipped
    ("Europe/Berlin", "2014-10-26 00:00:00"),     # fall back: 02:00-03:00 CEST, then CET
    ("Europe/Berlin", "2014-03-30 00:00:00"),     # spring forward
    ("Australia/Sydney", "2014-04-05 15:00:00"),  # southern hemisphere fall back
])
def test_render_parse_round_trips_across_dst_changes(local, zone: str, start: str) -> None:
    zoneinfo = local(zone)
    seen = set()
    for step in range(4 * 60 // 7 + 1):  # every 7 minutes and 13.5 seconds through 4 hours
        ts = utc(start) + step * 433.5
        text = ts.render(zoneinfo, ms=6)
        seen.add(text.rsplit(" ", 1)[1])
        assert timestamp(text).render(ms=6) == ts.render(ms=6), text
        assert timestamp(ts.render(zoneinfo)) == ts
        assert timestamp(ts.local) == timestamp(ts.render(ms=0))
    assert len(seen) == 2  # both abbreviations were crossed


def test_other_zones_round_trip_once_their_region_is_supported(local) -> None:
    local("America/Edmonton")
    ts = utc("2014-10-26 00:30:00")
    text = ts.render("Europe/Berlin")
    assert text == "2014-10-26 02:30:00.000 CEST"
    with pytest.raises(TimestampError, match=r"unknown time zone abbreviation 'CEST'.*support_abbreviations"):
        timestamp(text)
    assert timestamp.support_abbreviations("Europe/Berlin") == ["CEST", "CET"]
    assert timestamp(text) == ts
    assert timestamp((ts + 3600).render("Europe/Berlin")) == ts + 3600
    assert (ts + 3600).render("CET") == "2014-10-26 02:30:00.000 CET"  # abbreviation -> its zone


def test_country_code_region_and_exclusions() -> None:
    added = timestamp.support_abbreviations("CA", exclude=["America/St_Johns", "AST"])
    assert {"MST", "MDT", "PST", "PDT", "EST", "EDT", "CST", "CDT"} <= set(added)
    assert "NST" not in added and "AST" not in added
    assert timestamp.support_abbreviations("CA") == ["AST", "NDT", "NST"]
    assert timestamp.support_abbreviations(None, reset=True) == []
    assert "America/Edmonton" in list(zone_names("CA"))
    assert list(zone_names(["Europe/Berlin"])) == ["Europe/Berlin"]
    with pytest.raises(ValueError, match="Unknown time zone region 'Atlantis'"):
        timestamp.support_abbreviations("Atlantis")


# -- globally ambiguous abbreviations ------------------------------------------------------------

def test_clashing_abbreviation_keeps_first_meaning_and_renders_numerically(caplog) -> None:
    timestamp.support_abbreviations("America/Winnipeg")  # CST -0600
    with caplog.at_level(logging.WARNING, logger="cpppo.history"):
        added = timestamp.support_abbreviations("Asia/Shanghai")  # CST +0800
    assert added == [] and "CST is +0800 in Asia/Shanghai but -0600" in caplog.text
    ts = utc("2014-07-01 12:00:00")
    assert ts.render("Asia/Shanghai") == "2014-07-01 20:00:00.000 +0800"
    assert timestamp(ts.render("Asia/Shanghai")) == ts
    assert timestamp("2014-01-01 06:00:00 CST") == utc("2014-01-01 12:00:00")


def test_clash_raises_when_first_is_false_and_registers_nothing() -> None:
    with pytest.raises(AmbiguousTimeZoneError, match="IST is"):
        timestamp.support_abbreviations(["Europe/Dublin", "Asia/Kolkata", "Europe/Berlin"], first=False)
    assert timestamp._abbreviations.registered() == {}


def test_local_zone_meaning_wins_over_registered(local) -> None:
    local("Asia/Kolkata")
    timestamp.support_abbreviations("Europe/Dublin")  # IST +0100 there
    ts = utc("2014-07-01 12:00:00")
    assert ts.local == "2014-07-01 17:30:00 IST"
    assert timestamp("2014-07-01 17:30:00 IST") == ts
    assert ts.render("Europe/Dublin") == "2014-07-01 13:00:00.000 +0100"  # not misread as +0530
    assert timestamp(ts.render("Europe/Dublin")) == ts


def test_a_name_used_for_two_offsets_in_one_zone_is_not_registered() -> None:
    class Renamed(tzinfo):
        """'XST' at -0500 before 2014-07-01, at -0400 after: the name alone cannot say which."""
        def utcoffset(self, dt):
            return timedelta(hours=-4 if dt.replace(tzinfo=None) >= datetime(2014, 7, 1) else -5)
        def dst(self, dt):
            return timedelta(0)
        def tzname(self, dt):
            return "XST"
    at = datetime(2014, 7, 1, tzinfo=UTC)
    assert zone_abbreviations(Renamed(), at, timedelta(days=30)) == {}
    assert set(zone_abbreviations(Renamed(), at + timedelta(days=60), timedelta(days=30))) == {"XST"}


def test_numeric_zone_names_and_tzdetail() -> None:
    ts = utc("2014-07-01 12:00:00")
    assert ts.render("America/Sao_Paulo") == "2014-07-01 09:00:00.000 -03"
    assert ts.render("Asia/Kolkata", tzdetail=False) == "2014-07-01 17:30:00.000+0530"
    assert ts.render(tzdetail=False) == "2014-07-01 12:00:00.000+0000"
    assert ts.render("Asia/Kolkata", tzdetail=True) == "2014-07-01 17:30:00.000 Asia/Kolkata"
    assert ts.render(timezone(timedelta(hours=-7))) == "2014-07-01 05:00:00.000 -0700"
    for text in (ts.render("America/Sao_Paulo"), ts.render("Asia/Kolkata", tzdetail=False),
                 ts.render("Asia/Kolkata", tzdetail=True), ts.render("Australia/Lord_Howe")):
        assert timestamp(text) == ts, text


ROUND_TRIP_ZONES = ["America/Edmonton", "Europe/Berlin", "Australia/Sydney", "Europe/Dublin",
                    "Asia/Kolkata", "America/Sao_Paulo", "Europe/Moscow", "Australia/Lord_Howe",
                    "America/New_York", "Europe/London", "Pacific/Chatham", "America/St_Johns"]
AT = datetime(2020, 1, 1, tzinfo=UTC)
REACH = timedelta(days=400)
_registry: list[AbbreviationRegistry] = []


def round_trip(micro: int, zone: str, local_zone: str) -> tuple[str, timestamp | TimestampError]:
    """Render ``micro`` in ``zone`` (local zone ``local_zone``, abbreviations of all the zones
    registered around AT) and parse the text back."""
    if not _registry:
        _registry.append(AbbreviationRegistry())
        _registry[0].support(ROUND_TRIP_ZONES, at=AT, reach=REACH)
    saved = timestamp._abbreviations, timestamp.LOC
    timestamp._abbreviations, timestamp.LOC = _registry[0], ZoneInfo(local_zone)
    try:
        text = timestamp(micro / 10**6).render(zone, ms=6)
        try:
            return text, timestamp(text)
        except TimestampError as exc:
            return text, exc
    finally:
        timestamp._abbreviations, timestamp.LOC = saved


@settings(max_examples=300, deadline=None)
@given(micro=st.integers(int((AT - REACH).timestamp()) * 10**6, int((AT + REACH).timestamp()) * 10**6),
       zone=st.sampled_from(ROUND_TRIP_ZONES), local_zone=st.sampled_from(ROUND_TRIP_ZONES))
def test_render_parse_is_the_same_instant_in_supported_zones(micro: int, zone: str,
                                                             local_zone: str) -> None:
    text, parsed = round_trip(micro, zone, local_zone)
    assert isinstance(parsed, timestamp), text
    assert parsed.render(ms=6) == timestamp(micro / 10**6).render(ms=6), text


@settings(max_examples=300, deadline=None)
@given(micro=st.integers(0, 2114380800 * 10**6), zone=st.sampled_from(ROUND_TRIP_ZONES),
       local_zone=st.sampled_from(ROUND_TRIP_ZONES))
def test_render_is_never_misread_at_any_time(micro: int, zone: str, local_zone: str) -> None:
    """Outside the registered span a zone may use a name not registered (Moscow's MSD): that
    fails loudly, it is never read as a different instant."""
    text, parsed = round_trip(micro, zone, local_zone)
    if isinstance(parsed, TimestampError):
        assert "unknown time zone abbreviation" in str(parsed), text
    else:
        assert parsed.render(ms=6) == timestamp(micro / 10**6).render(ms=6), text


# -- comparison and arithmetic -----------------------------------------------------------------

def test_comparisons_are_to_the_millisecond_like_the_rendering() -> None:
    base = timestamp(1000.0)
    assert timestamp(1000.0004) == base and str(timestamp(1000.0004)) == str(base)
    assert timestamp(1000.0006) != base and timestamp(1000.0006) > base
    assert timestamp(999.9996) == base and not timestamp(999.9996) < base
    assert timestamp(999.9994) < base <= timestamp(1000.0004) < timestamp(1000.001)
    assert base >= timestamp(999.9996) and base > 999.9 and base < 1000.1 and base == 1000
    assert base != "1000" and sorted([timestamp(3), timestamp(1), timestamp(2)])[0] == 1
    with pytest.raises(TypeError):
        hash(base)
    with pytest.raises(TypeError):
        _ = base < "1000"


def test_arithmetic_in_seconds() -> None:
    ts = timestamp("2014-04-01 00:00:00")
    later = ts + 1.5
    assert later.render() == "2014-04-01 00:00:01.500" and ts.render() == "2014-04-01 00:00:00.000"
    assert (2.5 + ts).render() == "2014-04-01 00:00:02.500"
    assert later - ts == 1.5 and ts - later == -1.5
    assert (ts - 86400).render() == "2014-03-31 00:00:00.000"
    assert (ts + timedelta(hours=1)).render() == "2014-04-01 01:00:00.000"
    assert (ts + 0.000001).render(ms=6) == "2014-04-01 00:00:00.000001"
    same = ts
    ts += 60
    assert same is ts and str(ts) == "2014-04-01 00:01:00.000"  # the cached string follows
    ts -= timedelta(seconds=30)
    assert ts.utc == "2014-04-01 00:00:30.000"
    ts.value = 0.25
    assert ts.utc == "1970-01-01 00:00:00.250"
    with pytest.raises(TypeError):
        _ = ts + "1"


def test_timezone_info() -> None:
    timestamp.support_abbreviations("America/Edmonton")
    assert timestamp.timezone_info("MDT") == (EDMONTON, True)
    assert timestamp.timezone_info("MST") == (EDMONTON, False)
    assert timestamp.timezone_info("Europe/Berlin") == (BERLIN, None)
    with pytest.raises(TimestampError, match="Unknown time zone 'Nowhere/Special'"):
        timestamp.timezone_info("Nowhere/Special")
