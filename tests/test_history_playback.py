"""cpppo.history playback: pacing at 1x, 10x and as fast as possible, with a fake clock.

Nothing here sleeps: the clock and sleep are injected, and the tests assert on the waits that
playback asks for.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cpppo.history import HistoryReader, HistoryWriter, Pacer, Record, aplayback, playback, timestamp

T0 = 1405461824.0


class FakeClock:
    """A clock that moves only when slept on (or when a test moves it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def records(*offsets: float) -> list[Record]:
    return [Record(timestamp(T0 + offset), f"Tag_{i}", i) for i, offset in enumerate(offsets)]


@pytest.mark.parametrize(("speed", "waits"), [
    (1.0, [1.0, 2.0, 7.0]),
    (10.0, [0.1, 0.2, 0.7]),
    (0.5, [2.0, 4.0, 14.0]),
])
def test_waits_follow_the_recorded_gaps_scaled_by_speed(speed: float, waits: list[float]) -> None:
    clock = FakeClock()
    history = records(0, 1, 3, 3, 10)
    played = list(playback(history, speed, clock=clock, sleep=clock.sleep))
    assert played == history
    assert clock.sleeps == pytest.approx(waits)


@pytest.mark.parametrize("speed", [None, float("inf")])
def test_as_fast_as_possible_never_waits(speed) -> None:
    clock = FakeClock()
    history = records(0, 1, 3600, 86400)
    assert list(playback(history, speed, clock=clock, sleep=clock.sleep)) == history
    assert clock.sleeps == []


def test_a_day_at_1x_asks_for_a_day_of_waits_without_taking_it() -> None:
    clock = FakeClock()
    history = records(*range(0, 86401, 60))
    assert len(list(playback(history, 1.0, clock=clock, sleep=clock.sleep))) == 1441
    assert clock.sleeps == pytest.approx([60.0] * 1440)
    assert clock.now == pytest.approx(1000.0 + 86400)


def test_a_slow_consumer_catches_up_without_drift() -> None:
    clock = FakeClock()
    played = playback(records(0, 1, 3, 4, 10), 1.0, clock=clock, sleep=clock.sleep)
    assert next(played).value == 0
    clock.now += 3.5  # the consumer took 3.5 s with the first record
    assert [next(played).value for _ in range(2)] == [1, 2]  # both overdue: no wait
    assert next(played).value == 3 and clock.sleeps == pytest.approx([0.5])  # due at +4
    assert next(played).value == 4 and clock.sleeps == pytest.approx([0.5, 6.0])  # due at +10
    assert next(played, None) is None


def test_out_of_order_records_are_due_at_once() -> None:
    clock = FakeClock()
    list(playback(records(0, 5, 2, 6), 1.0, clock=clock, sleep=clock.sleep))
    assert clock.sleeps == pytest.approx([5.0, 1.0])


def test_max_gap_shortens_quiet_spells() -> None:
    clock = FakeClock()
    list(playback(records(0, 1, 3601, 3602, 3610), 1.0, max_gap=5.0, clock=clock, sleep=clock.sleep))
    assert clock.sleeps == pytest.approx([1.0, 5.0, 1.0, 5.0])
    clock = FakeClock()
    list(playback(records(0, 100, 200), 10.0, max_gap=2.0, clock=clock, sleep=clock.sleep))
    assert clock.sleeps == pytest.approx([0.2, 0.2])


def test_bad_pacing_settings_are_refused() -> None:
    for speed in (0, -1.0):
        with pytest.raises(ValueError, match="speed must be > 0"):
            Pacer(speed)
    with pytest.raises(ValueError, match="max_gap"):
        Pacer(1.0, max_gap=-1)


def test_pacer_accepts_tuples_and_timestamps() -> None:
    clock = FakeClock()
    plain = [(T0, "a", 1), (timestamp(T0 + 2), "b", 2), (T0 + 2.5, "c", 3)]
    assert list(playback(plain, 2.0, clock=clock, sleep=clock.sleep)) == plain
    assert clock.sleeps == pytest.approx([1.0, 0.25])


def test_reader_playback_of_a_time_range(tmp_path: Path) -> None:
    path = tmp_path / "plant.hst.gz"
    with HistoryWriter(path) as history:
        for i in range(20):
            history.write(T0 + i * 2, "Tag", i)
    clock = FakeClock()
    played = list(HistoryReader(path).playback(4.0, start=T0 + 10, end=T0 + 20, clock=clock,
                                               sleep=clock.sleep))
    assert [r.value for r in played] == [5, 6, 7, 8, 9]
    assert clock.sleeps == pytest.approx([0.5] * 4)


def test_async_playback_paces_the_same() -> None:
    clock = FakeClock()

    async def collect() -> list[Record]:
        return [r async for r in aplayback(records(0, 1, 3), 2.0, clock=clock, sleep=clock.asleep)]

    assert [r.value for r in asyncio.run(collect())] == [0, 1, 2]
    assert clock.sleeps == pytest.approx([0.5, 1.0])
