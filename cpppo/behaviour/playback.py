"""Playback: a value follows a recorded series, a ``cpppo.history`` file (what
``python -m cpppo.server.enip.historize`` records) or a CSV of ``time,value`` rows.

Times are made relative to the first record; the series plays at ``speed`` x real time
(elapsed since the device started), loops or holds its last value, and interpolates linearly
between numeric points (or steps from one to the next).
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpppo.behaviour.shapes import Moment, Shape

__all__ = ["Playback", "load_series"]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _csv_series(path: Path) -> list[tuple[float, Any]]:
    from cpppo.history.times import timestamp

    points = []
    with open(path, newline="") as stream:
        for number, row in enumerate(csv.reader(stream), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{number}: expected time,value")
            when, value = row[0].strip(), row[1].strip()
            seconds = _number(when)
            if seconds is None:
                try:
                    seconds = timestamp(when).value
                except Exception:
                    if not points and number == 1:
                        continue  # a header line
                    raise ValueError(f"{path}:{number}: {when!r} is neither seconds nor a "
                                     "timestamp") from None
            numeric = _number(value)
            points.append((seconds, value if numeric is None else numeric))
    return points


def _history_series(path: Path, name: str | None, element: int) -> list[tuple[float, Any]]:
    from cpppo.history.files import HistoryReader

    points = []
    for record in HistoryReader(path):
        tag = record.name[0] if isinstance(record.name, list) and record.name else record.name
        if name is not None and str(tag) != name:
            continue
        value = record.value
        if isinstance(value, dict):
            first = None
            if isinstance(record.name, list) and len(record.name) > 1 and isinstance(record.name[1], list):
                first = record.name[1][0]
            value = value.get("write", value.get("read"))
            if value is None:
                continue  # an error record
            if isinstance(value, list):
                index = element - (first or 0)
                if not 0 <= index < len(value):
                    continue
                value = value[index]
        elif isinstance(value, list):
            value = value[element] if element < len(value) else None
        if value is not None:
            points.append((record.timestamp.value, value))
    return points


def load_series(file: str, name: str | None = None, element: int = 0) -> list[tuple[float, Any]]:
    """The (seconds from the first point, value) series in ``file`` (``.csv``: time,value rows;
    anything else: a cpppo.history file, records of tag ``name`` if given); ValueError naming
    the file and the problem if it is missing, unreadable or empty."""
    path = Path(file)
    try:
        points = _csv_series(path) if path.suffix.lower() == ".csv" else _history_series(path, name, element)
    except OSError as exc:
        raise ValueError(f"playback file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"playback file {file}: not a text file") from None
    if not points:
        raise ValueError(f"playback file {file}: no records" + (f" of {name!r}" if name else ""))
    points.sort(key=lambda p: p[0])
    first = points[0][0]
    return [(when - first, value) for when, value in points]


@dataclass
class Playback(Shape):
    series: list[tuple[float, Any]]
    speed: float = 1.0
    loop: bool = True
    interpolate: bool = True
    _times: list[float] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        self._times = [when for when, _ in self.series]

    @property
    def duration(self) -> float:
        return self._times[-1]

    def at(self, position: float) -> Any:
        """The value ``position`` seconds into the series (before looping)."""
        index = bisect.bisect_right(self._times, position) - 1
        if index < 0:
            return self.series[0][1]
        when, value = self.series[index]
        if not self.interpolate or index + 1 >= len(self.series) or isinstance(value, (str, bool)):
            return value
        after_when, after = self.series[index + 1]
        if isinstance(after, (str, bool)) or after_when <= when:
            return value
        return value + (after - value) * (position - when) / (after_when - when)

    def value(self, moment: Moment) -> Any:
        position = moment.elapsed * self.speed
        if self.duration > 0 and position > self.duration:
            position = position % self.duration if self.loop else self.duration
        return self.at(position)

    def bounds(self) -> tuple[float, float] | None:
        numbers = [v for _, v in self.series if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return (min(numbers), max(numbers)) if len(numbers) == len(self.series) else None
