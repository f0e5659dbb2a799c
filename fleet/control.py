"""The local control channel from the CLI to each worker: one unix socket per worker in the
control folder (``<state>/control/<worker>.sock``), carrying one JSON object per line each way.
No network port is opened for it; in the Docker backend the state folder's ``control/`` is
bind-mounted into each container, so the same channel reaches it.

Requests (``{"op": ...}``) and their answers (``{"ok": true, ...}`` or ``{"ok": false,
"error": "..."}``):

- ``{"op": "fault", "devices": [...], "fault": {...}}``: apply a :class:`cpppo.faults.Fault`;
  answers ``{"applied": [...]}`` (devices this worker hosts; others are ignored).
- ``{"op": "clear", "devices": [...] | null}``: end faults (all of this worker's with null).
- ``{"op": "faults"}``: ``{"faults": {device: fault-snapshot}}`` of the active ones.
- ``{"op": "ping"}``: ``{"worker": name, "pid": pid, "devices": n}``.
- ``{"op": "lines"}``: ``{"lines": {link: {"serving": bool, "units": [...], "frames": n}}}``, the
  Modbus/RTU lines the worker serves (:meth:`fleet.rtu.Line.report`); such reports are the
  entries of :data:`REPORTS` (their modules add them).

A unix socket's path is limited to 107 bytes; a long state folder is reached through
``/proc/self/fd/N/``, which is short whatever the folder's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cpppo.faults import Fault, FaultError, FaultState

__all__ = ["MAX_LINE", "REPORTS", "ControlError", "ControlServer", "control_dir", "request", "socket_path"]

REPORTS: dict[str, Callable[[], Any]] = {}  # op -> what the worker answers to it (fleet.rtu: "lines")
MAX_LINE = 1 << 20  # one request line at most (a list of 100,000 device names fits)
_SUN_PATH_MAX = 107


class ControlError(RuntimeError):
    """A worker that cannot be reached, or an error it answered; the message is one line."""


def control_dir(state_dir: Path) -> Path:
    """The control folder of a fleet's state folder: sockets and the fault record."""
    return Path(state_dir) / "control"


def socket_path(control: Path, worker: str) -> Path:
    """The control socket of ``worker`` in the control folder ``control``."""
    return Path(control) / f"{worker}.sock"


@contextlib.contextmanager
def _short(path: Path):
    """A path to ``path`` short enough for a unix socket address (through /proc/self/fd)."""
    text = str(path)
    if len(text.encode()) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class ControlServer:
    """Serves the control requests of one worker: ``faults`` maps each device it hosts to the
    fault slot its server consults.  ``on_change(device, fault_or_None)`` is told of changes."""

    def __init__(self, path: Path, worker: str, faults: Mapping[str, FaultState],
                 on_change: Callable[[str, Fault | None], None] | None = None,
                 group: int | None = None) -> None:
        self.path = Path(path)
        self.group = group  # a group that may use the socket too (the Docker host user's)
        self.worker = worker
        self.faults = faults
        self.on_change = on_change
        self.server: asyncio.AbstractServer | None = None
        self.schedule: asyncio.Future | None = None  # the worker's fault schedule, if any

    async def start(self) -> ControlServer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _short(self.path) as address:
            sock.bind(address)
        if self.group is not None:
            os.chown(self.path, -1, self.group)
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)
        self.server = await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_LINE)
        return self

    def close(self) -> None:
        if self.schedule is not None:
            self.schedule.cancel()
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(b'{"ok": false, "error": "request line too long"}\n')
                    break
                if not line:
                    break
                writer.write(json.dumps(self.answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        op = message.get("op")
        try:
            if op == "ping":
                return {"ok": True, "worker": self.worker, "pid": os.getpid(), "devices": len(self.faults)}
            if op in REPORTS:
                return {"ok": True, op: REPORTS[op]()}
            if op == "faults":
                active = {name: snap for name, state in self.faults.items() if (snap := state.snapshot())}
                return {"ok": True, "faults": active}
            if op == "fault":
                fault = Fault.from_dict(message["fault"])
                return {"ok": True, "applied": self._each(message.get("devices"), fault)}
            if op == "clear":
                return {"ok": True, "cleared": self._each(message.get("devices"), None)}
        except (KeyError, TypeError, FaultError) as exc:
            return {"ok": False, "error": f"bad {op} request: {exc}"}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _each(self, names: Any, fault: Fault | None) -> list[str]:
        chosen = list(self.faults) if names is None else [n for n in names if n in self.faults]
        for name in chosen:
            state = self.faults[name]
            if fault is None and state.active is None:
                continue
            state.set(fault)
            if self.on_change is not None:
                self.on_change(name, fault)
        return chosen


def request(path: Path, message: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the worker at ``path`` and return its answer (blocking);
    ControlError when the worker cannot be reached or answers an error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _short(Path(path)) as address:
            sock.connect(address)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 64 * MAX_LINE:
                raise ControlError(f"{path.name}: answer too long")
    except FileNotFoundError:
        raise ControlError(f"worker {Path(path).stem} has no control socket (is it running?)") from None
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise ControlError(f"worker {Path(path).stem} does not answer: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"worker {Path(path).stem} answered garbage") from None
    if not answer.get("ok"):
        raise ControlError(f"worker {Path(path).stem}: {answer.get('error', 'failed')}")
    return answer
