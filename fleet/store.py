"""The fleet's SQLite database in its state folder: health results (the last ``retention`` of
each device), worker starts (for uptime and restart counts) and the devices a worker could
not serve (their address taken, ...).  Written by the health poller and the workers, read by
``status`` from any shell.  A database that is not one (overwritten, truncated) raises
:class:`StoreError`; writers put it aside with :func:`open_store` and start afresh."""

from __future__ import annotations

import contextlib
import os
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
CREATE TABLE IF NOT EXISTS serve_errors (
    device TEXT PRIMARY KEY, worker TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL,
    error TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0);
"""
# columns added since a table was first created: (table, column, definition)
ADDED_COLUMNS = (("serve_errors", "final", "INTEGER NOT NULL DEFAULT 0"),)
HORIZON = 10  # results older than HORIZON * retention sweeps go, whoever they belong to


class StoreError(RuntimeError):
    """The database cannot be used; ``str()`` is one line naming the file.  ``corrupt``: the
    file is not a (sound) SQLite database, as opposed to locked, unwritable, ..."""

    def __init__(self, path: Path, exc: sqlite3.Error) -> None:
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        super().__init__(f"health database {path}: {what}")
        # SQLITE_NOTADB and SQLITE_CORRUPT raise DatabaseError itself; busy, read-only,
        # cannot-open raise its subclass OperationalError
        self.corrupt = type(exc) is sqlite3.DatabaseError


@dataclass(frozen=True)
class HealthResult:
    """One poll of one device."""

    device: str  # device name
    ok: bool  # answered correctly
    latency: float | None  # seconds for the whole poll
    error: str | None  # what was wrong, one line
    time: float = 0.0  # epoch seconds when the poll ended


@dataclass(frozen=True)
class ServeError:
    """A device its worker could not serve (still retrying)."""

    device: str  # device name
    worker: str  # worker name
    pid: int  # the worker process that failed
    time: float  # epoch seconds of the latest attempt
    error: str  # one line: "[Errno 98] ... address already in use"
    final: bool = False  # the worker gave up on it (its model cannot be built): it will not retry


@dataclass(frozen=True)
class DeviceHistory:
    """What the store knows about one device."""

    last: HealthResult | None  # the newest result
    latencies: tuple[float, ...]  # latencies of the retained successful polls


class Store:
    """A connection to ``<state>/health.sqlite`` (WAL mode, so readers never block writers)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(self.path, exc) from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            for table, column, definition in ADDED_COLUMNS:  # a database made by an older version
                present = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        except sqlite3.Error as exc:
            self.db.close()
            raise StoreError(self.path, exc) from None
        self.inode = _inode(self.path)

    def replaced(self) -> bool:
        """Whether the file was deleted or replaced since it was opened.  (By stat alone: opening
        and closing the file here would drop SQLite's POSIX locks of this process.)"""
        return _inode(self.path) != self.inode

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, results: Iterable[HealthResult], retention: int) -> int:
        """Store one sweep's results (all, or some devices'); keep the last ``retention`` results
        of each device (and none older than ``HORIZON * retention`` sweeps, so that devices no
        longer polled go too); return the sweep number."""
        results = list(results)
        try:
            return self._record(results, retention)
        except sqlite3.Error as exc:
            raise StoreError(self.path, exc) from None

    def _record(self, results: list[HealthResult], retention: int) -> int:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")  # one writer at a time computes the next sweep
            (last,) = self.db.execute("SELECT COALESCE(MAX(sweep), 0) FROM results").fetchone()
            sweep = last + 1
            self.db.executemany(
                "INSERT INTO results (sweep, time, device, ok, latency, error) VALUES (?, ?, ?, ?, ?, ?)",
                [(sweep, r.time or time.time(), r.device, int(r.ok), r.latency, r.error) for r in results])
            self.db.executemany(
                "DELETE FROM results WHERE device = ?1 AND sweep <= (SELECT sweep FROM results "
                "WHERE device = ?1 ORDER BY sweep DESC LIMIT 1 OFFSET ?2)",
                [(name, retention) for name in {r.device for r in results}])
            self.db.execute("DELETE FROM results WHERE sweep <= ?", (sweep - HORIZON * retention,))
        return sweep

    def history(self, devices: Iterable[str] | None = None) -> dict[str, DeviceHistory]:
        """Each device's newest result and retained latencies."""
        last: dict[str, HealthResult] = {}
        latencies: dict[str, list[float]] = {}
        rows = self._read("SELECT device, ok, latency, error, time FROM results ORDER BY sweep, rowid")
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
        for worker, pid, when in self._read("SELECT worker, pid, time FROM starts ORDER BY rowid"):
            out.setdefault(worker, []).append((pid, when))
        return out

    def forget_starts(self) -> None:
        """A fresh fleet: restart counts begin again (and no worker has failed yet)."""
        with self.db:
            self.db.execute("DELETE FROM starts")
            self.db.execute("DELETE FROM serve_errors")

    def record_serve_errors(self, worker: str, pid: int, errors: dict[str, str],
                            final: set[str] | frozenset[str] = frozenset()) -> None:
        """The devices worker ``worker`` (process ``pid``) cannot serve now (empty: it serves all);
        those in ``final`` it gave up on."""
        now = time.time()
        with self.db:
            self.db.execute("DELETE FROM serve_errors WHERE worker = ?", (worker,))
            self.db.executemany("INSERT OR REPLACE INTO serve_errors VALUES (?, ?, ?, ?, ?, ?)",
                                [(device, worker, pid, now, error, int(device in final))
                                 for device, error in errors.items()])

    def serve_errors(self) -> dict[str, ServeError]:
        """device -> why its worker cannot serve it."""
        rows = self._read("SELECT device, worker, pid, time, error, final FROM serve_errors")
        return {row[0]: ServeError(*row[:5], final=bool(row[5])) for row in rows}

    def _read(self, sql: str) -> list[tuple]:
        try:
            return self.db.execute(sql).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(self.path, exc) from None


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def open_store(path: Path) -> Store:
    """A Store for writing, checked: a file that is not a sound database is renamed
    ``<name>.corrupt`` (kept for a look) and a new one is started."""
    try:
        store = Store(path)
    except StoreError as exc:
        if not exc.corrupt:
            raise
    else:
        try:
            (verdict,) = store.db.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # busy, locked, ...: not damage
                store.close()
                raise StoreError(path, exc) from None
            verdict = str(exc)
        if verdict == "ok":
            return store
        store.close()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{path}.corrupt{suffix}")
    return Store(path)
