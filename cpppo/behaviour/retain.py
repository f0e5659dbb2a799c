"""Retained values: an append-only journal of the writes clients made, replayed at start.

Every acknowledged write is appended with one ``os.write`` before the reply is sent, so it
is in the kernel (and survives a SIGKILL of the process) by the time the client hears of it;
an ``fsync`` follows at most ``sync_interval`` seconds later, batched, for power loss.  At
start the journal is read (a final line cut short is skipped), its last value of every
element is applied, and it is compacted to one line per element if anything was overwritten.

Each line is JSON: ``[key, start, values]`` (a tag name or register number, the first
element, the values written).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Journal"]

log = logging.getLogger(__name__)


class Journal:
    """``journal.record(key, start, values)``; ``journal.replay(apply)`` at start."""

    def __init__(self, path: str | Path, sync_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.sync_interval = sync_interval
        self._fd: int | None = None
        self._dirty = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def entries(self) -> Iterator[tuple[Any, int, list[Any]]]:
        """The recorded writes, oldest first."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        for number, line in enumerate(lines[:-1], 1):  # the last piece: empty, or a cut-short write
            if not line.strip():
                continue
            try:
                key, start, values = json.loads(line)
            except (ValueError, TypeError):
                log.warning("%s:%d: skipping an unreadable line", self.path, number)
                continue
            yield key, int(start), list(values)
        if lines[-1].strip():
            log.warning("%s: skipping the final line, cut short", self.path)

    def replay(self, apply: Callable[[Any, int, list[Any]], None]) -> int:
        """Apply every recorded write (``apply`` may raise ValueError/KeyError for a key that
        no longer exists: logged and skipped), compact the journal and open it for appending;
        returns the number of writes applied."""
        latest: dict[tuple[Any, int], Any] = {}
        applied = elements = 0
        for key, start, values in self.entries():
            elements += len(values)
            try:
                apply(key, start, values)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                log.warning("%s: cannot restore %s[%d]: %s", self.path, key, start, exc)
                continue
            applied += 1
            for offset, value in enumerate(values):
                latest[(key if not isinstance(key, list) else tuple(key), start + offset)] = value
        if elements > len(latest):  # only when something was overwritten: a start costs no fsync
            self._compact(latest)
        return applied

    def _compact(self, latest: dict[tuple[Any, int], Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w") as stream:
            for (key, index), value in latest.items():
                stream.write(json.dumps([key, index, [value]]) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.path)
        self.close()  # reopened by the first write: an idle device holds no descriptor

    def record(self, key: Any, start: int, values: list[Any]) -> None:
        """Append one write (before its reply is sent)."""
        line = (json.dumps([key, start, values]) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line)
            if not self._dirty:
                self._dirty = True
                self._timer = threading.Timer(self.sync_interval, self.sync)
                self._timer.daemon = True
                self._timer.start()

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None and self._dirty:
                os.fsync(self._fd)
            self._dirty = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.sync()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
