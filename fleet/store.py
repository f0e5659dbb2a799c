"""The fleet's SQLite database in its state folder: health results (bounded retention, by
sweep) and worker starts (for uptime and restart counts).  Written by the health poller and
the workers, read by ``status`` from any shell."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    sweep INTEGER NOT NULL, time REAL NOT NULL, device TEXT NOT NULL,
    ok INTEGER NOT NULL, latency REAL, error TEXT);
CREATE INDEX IF NOT EXISTS results_sweep ON results (sweep);
CREATE INDEX IF NOT EXISTS results_device ON results (device, sweep);
CREATE TABLE IF NOT EXISTS starts (worker TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL);
"""


@dataclass(frozen=True)
class HealthResult:
    """One poll of one device."""

    device: str  # device name
    ok: bool  # answered correctly
    latency: float | None  # seconds for the whole poll
    error: str | None  # what was wrong, one line
    time: float = 0.0  # epoch seconds when the poll ended


@dataclass(frozen=True)
class DeviceHistory:
    """What the store knows about one device."""

    last: HealthResult | None  # the newest result
    latencies: tuple[float, ...]  # latencies of the retained successful polls


class Store:
    """A connection to ``<state>/health.sqlite`` (WAL mode, so readers never block writers)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, results: Iterable[HealthResult], retention: int) -> int:
        """Store one sweep's results; drop sweeps older than ``retention``; return the sweep number."""
        with self.db:
            (last,) = self.db.execute("SELECT COALESCE(MAX(sweep), 0) FROM results").fetchone()
            sweep = last + 1
            self.db.executemany(
                "INSERT INTO results (sweep, time, device, ok, latency, error) VALUES (?, ?, ?, ?, ?, ?)",
                [(sweep, r.time or time.time(), r.device, int(r.ok), r.latency, r.error) for r in results])
            self.db.execute("DELETE FROM results WHERE sweep <= ?", (sweep - retention,))
        return sweep

    def history(self, devices: Iterable[str] | None = None) -> dict[str, DeviceHistory]:
        """Each device's newest result and retained latencies."""
        last: dict[str, HealthResult] = {}
        latencies: dict[str, list[float]] = {}
        rows = self.db.execute("SELECT device, ok, latency, error, time FROM results ORDER BY sweep, rowid")
        for device, ok, latency, error, when in rows:
            last[device] = HealthResult(device, bool(ok), latency, error, when)
            if ok and latency is not None:
                latencies.setdefault(device, []).append(latency)
        names = list(devices) if devices is not None else list(last)
        return {d: DeviceHistory(last.get(d), tuple(latencies.get(d, ()))) for d in names}

    def record_start(self, worker: str, pid: int) -> None:
        with self.db:
            self.db.execute("INSERT INTO starts (worker, pid, time) VALUES (?, ?, ?)",
                            (worker, pid, time.time()))

    def starts(self) -> dict[str, list[tuple[int, float]]]:
        """worker -> [(pid, time), ...] oldest first."""
        out: dict[str, list[tuple[int, float]]] = {}
        for worker, pid, when in self.db.execute("SELECT worker, pid, time FROM starts ORDER BY rowid"):
            out.setdefault(worker, []).append((pid, when))
        return out

    def forget_starts(self) -> None:
        """A fresh fleet: restart counts begin again."""
        with self.db:
            self.db.execute("DELETE FROM starts")
