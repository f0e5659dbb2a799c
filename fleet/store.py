"""The fleet's SQLite database in its state folder: health results (one row per device: its
newest result, the latencies of its last ``retention`` results as a packed ring, and their
p50/p99, so that reading a 100,000-device fleet is one 100,000-row scan), worker starts (for
uptime and restart counts) and the devices a worker could not serve (their address taken,
...).  Written by the health poller and the workers, read by ``status`` from any shell.  A
database that is not one (overwritten, truncated) raises :class:`StoreError`; writers put it
aside with :func:`open_store` and start afresh."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fleet.bulk import no_collections

SCHEMA = """
DROP TABLE IF EXISTS results;
CREATE TABLE IF NOT EXISTS health (
    device TEXT NOT NULL UNIQUE, sweep INTEGER NOT NULL, time REAL NOT NULL, ok INTEGER NOT NULL,
    latency REAL, error TEXT, p50 REAL, p99 REAL, ring BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS health_sweep ON health (sweep);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS starts (worker TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS serve_errors (
    device TEXT PRIMARY KEY, worker TEXT NOT NULL, pid INTEGER NOT NULL, time REAL NOT NULL,
    error TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS serving (
    worker TEXT PRIMARY KEY, pid INTEGER NOT NULL, started REAL NOT NULL, served REAL);
"""
# health's rows are updated in place (an upsert), so they stay in the order they were first
# written: a poller's devices (a shard: every Nth of the plan) on pages of their own, and a
# sweep's commit writes those pages only.  (Kept in name order, WITHOUT ROWID, every shard's
# commit wrote every page of the table to the WAL: 100 MB each at 100,000 devices.)
UPSERT = ("INSERT INTO health VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
          + ", ".join(f"{c} = excluded.{c}" for c in ("sweep", "time", "ok", "latency", "error", "p50", "p99",
                                                    "ring")))
# columns added since a table was first created: (table, column, definition)
ADDED_COLUMNS = (("serve_errors", "final", "INTEGER NOT NULL DEFAULT 0"),)
HORIZON = 10  # devices not polled for HORIZON * retention sweeps go (no longer in the plan)


class StoreError(RuntimeError):
    """The database cannot be used; ``str()`` is one line naming the file.  ``corrupt``: the
    file is not a (sound) SQLite database, as opposed to locked, unwritable, ..."""

    def __init__(self, path: Path, exc: sqlite3.Error) -> None:
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        super().__init__(f"health database {path}: {what}")
        # SQLITE_NOTADB and SQLITE_CORRUPT raise DatabaseError itself; busy, read-only,
        # cannot-open raise its subclass OperationalError
        self.corrupt = type(exc) is sqlite3.DatabaseError


class HealthResult(NamedTuple):
    """One poll of one device.  (Named tuples here: a 100,000-device sweep makes 100,000 of
    them, and ``status`` reads them back; a frozen dataclass takes ten times as long to make.)"""

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


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile.

    >>> percentile([3.0, 1.0, 2.0], 0.5)
    2.0
    """
    if not values:
        return None
    return _rank(sorted(values), fraction)


def _rank(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of values already sorted (not empty)."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class DeviceHistory(NamedTuple):
    """What the store knows about one device."""

    last: HealthResult | None  # the newest result
    latencies: tuple[float, ...] = ()  # latencies of the retained successful polls (if read)
    p50: float | None = None  # median of the retained latencies (None: from ``latencies``)
    p99: float | None = None  # their 99th percentile

    def percentiles(self) -> tuple[float | None, float | None]:
        """(p50, p99) of the retained latencies: as stored, or computed from ``latencies``."""
        if self.p50 is not None:
            return self.p50, self.p99
        return percentile(self.latencies, 0.50), percentile(self.latencies, 0.99)


def _percentiles(ring: array) -> tuple[float | None, float | None]:
    """(p50, p99) of a ring's latencies, NaNs (failed polls) left out: :func:`percentile`'s,
    from one sort.

    >>> _percentiles(array("d", [3.0, math.nan, 1.0, 2.0]))
    (2.0, 3.0)
    """
    total = sum(ring)  # NaN if any value is: a ring of successful polls needs no filtering
    ordered = sorted(ring) if total == total else sorted([v for v in ring if v == v])
    if not ordered:
        return None, None
    return _rank(ordered, 0.50), _rank(ordered, 0.99)


def _ring(blob: bytes) -> array:
    ring = array("d")
    ring.frombytes(blob)
    return ring


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
            self._migrate()
        except sqlite3.Error as exc:
            self.db.close()
            raise StoreError(self.path, exc) from None
        self.inode = _inode(self.path)

    def _migrate(self) -> None:
        """A health table made by an older version (WITHOUT ROWID, in device order) is copied
        into one of today's; left as it is (it works, more slowly) where it cannot be now
        (a read-only file, a busy one)."""
        def old() -> bool:
            row = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'health'"
                                  ).fetchone()
            return row is not None and "WITHOUT ROWID" in row[0].upper()

        if not old():
            return
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                if old():  # not done by another process meanwhile
                    self.db.execute("ALTER TABLE health RENAME TO health_old")
                    create = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS health"):]
                    self.db.execute(create[:create.index(";")])
                    self.db.execute("INSERT INTO health SELECT * FROM health_old")
                    self.db.execute("DROP TABLE health_old")
                    self.db.execute("CREATE INDEX IF NOT EXISTS health_sweep ON health (sweep)")
        except sqlite3.OperationalError:
            pass

    def replaced(self) -> bool:
        """Whether the file was deleted or replaced since it was opened.  (By stat alone: opening
        and closing the file here would drop SQLite's POSIX locks of this process.)"""
        return _inode(self.path) != self.inode

    def damaged(self) -> bool:
        """Whether the file at the path is no longer a sound database (overwritten under us:
        a connection that writes to its WAL would not notice).  A second connection of this
        process is safe for SQLite's locks, and it reads the file's header afresh."""
        try:
            probe = sqlite3.connect(self.path, timeout=5.0)
        except sqlite3.Error:
            return False
        try:
            probe.execute("PRAGMA schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            return type(exc) is sqlite3.DatabaseError  # not a database, or corrupt (not: busy)
        finally:
            probe.close()
        return False

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, results: Iterable[HealthResult], retention: int, again: bool = False) -> int:
        """Store one sweep's results (all, or some devices'); keep the last ``retention`` results
        of each device (and none older than ``HORIZON * retention`` sweeps, so that devices no
        longer polled go too); return the sweep number.  ``again``: re-polls of some devices,
        added to the latest sweep (quick re-polls do not age the other devices' results)."""
        results = list(results)
        try:
            return self._record(results, retention, again)
        except sqlite3.Error as exc:
            raise StoreError(self.path, exc) from None

    def _record(self, results: list[HealthResult], retention: int, again: bool) -> int:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")  # one writer at a time computes the next sweep
            row = self.db.execute("SELECT value FROM meta WHERE key = 'sweep'").fetchone()
            last = row[0] if row else 0
            sweep = max(last, 1) if again else last + 1
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('sweep', ?)", (sweep,))
            names = json.dumps([r.device for r in results])
            rings = {device: _ring(blob) for device, blob in self.db.execute(
                "SELECT device, ring FROM health WHERE device IN (SELECT value FROM json_each(?))", (names,))}
            rows = []
            now = time.time()
            for r in results:  # a ring of the last ``retention`` results: NaN for a failed one
                ring = rings.get(r.device)
                if ring is None:
                    ring = rings[r.device] = array("d")
                ring.append(r.latency if r.ok and r.latency is not None else math.nan)
                if len(ring) > retention:
                    del ring[:-retention]
                p50, p99 = _percentiles(ring)
                rows.append((r.device, sweep, r.time or now, int(r.ok), r.latency, r.error, p50, p99,
                             ring.tobytes()))
            self.db.executemany(UPSERT, rows)
            if not again:  # (re-polls keep the sweep number: whoever set it deleted what it ages out)
                self.db.execute("DELETE FROM health WHERE sweep <= ?", (sweep - HORIZON * retention,))
        return sweep

    def sweeps(self) -> int:
        """How many sweeps were recorded (re-polls added to the latest do not count)."""
        row = self._read("SELECT value FROM meta WHERE key = 'sweep'")
        return row[0][0] if row else 0

    def history(self, devices: Iterable[str] | None = None,
                latencies: bool = True) -> dict[str, DeviceHistory]:
        """Each device's newest result and retained latencies (``latencies=False``: only their
        p50 and p99, which is all ``status`` shows, and quicker)."""
        ring = "ring" if latencies else "NULL"
        with no_collections():
            rows = self._read(f"SELECT device, ok, latency, error, time, p50, p99, {ring} FROM health")
            out = {}
            for device, ok, latency, error, when, p50, p99, blob in rows:
                kept = tuple(v for v in _ring(blob) if v == v) if blob is not None else ()
                last = HealthResult(device, bool(ok), latency, error, when)
                out[device] = DeviceHistory(last, kept, p50, p99)
        if devices is None:
            return out
        empty = DeviceHistory(None)
        return {d: out.get(d, empty) for d in devices}

    def ok_since(self, since: float) -> set[str]:
        """The devices whose newest result is ok and no older than ``since`` (epoch seconds)."""
        # one string of names, a line each (a device name has no line break: fleet.config),
        # is half the time of 100,000 rows
        rows = self._read_args("SELECT group_concat(device, char(10)) FROM health WHERE ok AND time >= ?",
                               (since,))
        return set(rows[0][0].split("\n")) if rows and rows[0][0] else set()

    def count_ok_since(self, since: float) -> int:
        """How many devices :meth:`ok_since` names (one number: a fifth of the names' time)."""
        rows = self._read_args("SELECT count(*) FROM health WHERE ok AND time >= ?", (since,))
        return int(rows[0][0]) if rows else 0

    def not_ok_since(self, since: float) -> dict[str, HealthResult]:
        """The newest result of each device not :meth:`ok_since` ``since`` that has one."""
        rows = self._read_args("SELECT device, ok, latency, error, time FROM health "
                               "WHERE NOT (ok AND time >= ?)", (since,))
        return {device: HealthResult(device, bool(ok), latency, error, when)
                for device, ok, latency, error, when in rows}

    def record_start(self, worker: str, pid: int, serving: bool = False) -> None:
        """Program ``worker`` started as process ``pid``; ``serving``: a worker process saying so
        itself, which will report its first attempt to serve (:meth:`record_serve_errors`)."""
        now = time.time()
        with self.db:
            self.db.execute("INSERT INTO starts (worker, pid, time) VALUES (?, ?, ?)", (worker, pid, now))
            if serving:
                self.db.execute("INSERT OR REPLACE INTO serving VALUES (?, ?, ?, NULL)", (worker, pid, now))

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
            self.db.execute("DELETE FROM serving")

    def record_serve_errors(self, worker: str, pid: int, errors: dict[str, str],
                            final: set[str] | frozenset[str] = frozenset()) -> None:
        """The devices worker ``worker`` (process ``pid``) cannot serve now (empty: it serves all);
        those in ``final`` it gave up on."""
        now = time.time()
        with self.db:
            self.db.execute("DELETE FROM serve_errors WHERE worker = ?", (worker,))
            self.db.execute("UPDATE serving SET served = ? WHERE worker = ? AND pid = ?", (now, worker, pid))
            self.db.executemany("INSERT OR REPLACE INTO serve_errors VALUES (?, ?, ?, ?, ?, ?)",
                                [(device, worker, pid, now, error, int(device in final))
                                 for device, error in errors.items()])

    def starting(self, since: float) -> set[str]:
        """The workers started after ``since`` (:meth:`record_start` by the worker itself) whose
        process has not yet been through its first attempt to serve its devices
        (:meth:`record_serve_errors`): a device of theirs polled now would only keep them
        busier.  A worker that does not report (a container without the state folder) is
        never starting."""
        rows = self._read_args("SELECT worker FROM serving WHERE served IS NULL AND started > ?", (since,))
        return {row[0] for row in rows}

    def serve_errors(self) -> dict[str, ServeError]:
        """device -> why its worker cannot serve it."""
        rows = self._read("SELECT device, worker, pid, time, error, final FROM serve_errors")
        return {row[0]: ServeError(*row[:5], final=bool(row[5])) for row in rows}

    def _read(self, sql: str) -> list[tuple]:
        return self._read_args(sql, ())

    def _read_args(self, sql: str, args: tuple) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
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
