"""The default backend: worker processes under a supervisord of the fleet's own, controlled
over XML-RPC on a unix socket in the state folder.  Needs neither Docker nor root."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from fleet import addresses
from fleet.backends import supervisor_conf
from fleet.backends.base import (
    HEALTH_PROGRAM,
    Backend,
    BackendError,
    ProgramStatus,
    Progress,
    no_progress,
    read_json,
    write_atomic,
)
from fleet.backends.lock import state_lock
from fleet.plan import Plan
from fleet.states import ProcessState
from fleet.store import Store, StoreError, open_store

START_TIMEOUT = 120.0  # seconds for every program to reach RUNNING
STOP_TIMEOUT = 30.0  # seconds for supervisord to exit after shutdown
_SETTLED = {"RUNNING", "FATAL"}
_IDLE = {"STOPPED", "EXITED", "FATAL"}


class ProcessBackend(Backend):
    """Workers and the health poller as supervisord programs."""

    name = "process"

    # -- supervisord plumbing -------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return supervisor_conf.socket_path(self.state)

    def _proxy(self) -> xmlrpc.client.ServerProxy:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport("", "", f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _rpc(self):  # -> the "supervisor" namespace of a fresh proxy
        return self._proxy().supervisor

    def answering(self) -> bool:
        """Whether our supervisord answers on its socket."""
        if not self.socket.exists():
            return False
        try:
            return self._rpc().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def _start_supervisord(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # stale: nobody answers on it
        conf = supervisor_conf.conf_path(self.state)
        with open(self.state.root / "supervisord.out", "ab") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, timeout=60, check=False,
            )
        if proc.returncode != 0:
            tail = (self.state.root / "supervisord.out").read_text().strip().splitlines()[-1:]
            raise BackendError(f"supervisord did not start: {' '.join(tail) or proc.returncode}")
        deadline = time.monotonic() + 20
        while not self.answering():
            if time.monotonic() > deadline:
                raise BackendError(f"supervisord does not answer on {self.socket}")
            time.sleep(0.05)

    def _supervisord_pid(self) -> int | None:
        try:
            pid = int(supervisor_conf.pid_path(self.state).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _cmdline_mentions(pid, str(supervisor_conf.conf_path(self.state))) else None

    # -- up -------------------------------------------------------------------------------
    def _selection(self, only: Sequence[str] | None, running: bool) -> list[str] | None:
        """Patterns selected so far (None: everything): ``--only`` adds to a running fleet."""
        previous = read_json(self.state.selection) if running else []
        if not only or previous is None:
            return None
        return sorted(set(previous or []) | set(only))

    def _applied(self, selection: list[str] | None) -> Plan:
        devices = self.plan.select(selection)
        if not devices:
            raise BackendError(f"--only {' '.join(selection or [])}: no device matches")
        names = {d.worker for d in devices}
        workers = tuple(w for w in self.plan.workers if w.name in names)
        return Plan(fleet=self.plan.fleet, devices=devices, workers=workers)

    def _write_files(self, applied: Plan) -> list[tuple[str, str]]:
        self.state.make()
        workers = []
        for worker in applied.workers:
            spec = {
                "worker": worker.name,
                "state_dir": str(self.state.root),
                "devices": [d.to_json() for d in applied.worker_devices(worker.name)],
            }
            text = json.dumps(spec, indent=1, sort_keys=True)
            write_atomic(self.state.worker_spec(worker.name), text)
            workers.append((worker.name, hashlib.sha1(text.encode()).hexdigest()[:16]))
        write_atomic(self.state.plan, applied.dumps())
        conf = supervisor_conf.render(self.state, self.plan.fleet.name, workers, len(applied.devices))
        write_atomic(supervisor_conf.conf_path(self.state), conf)
        return workers

    def _add_addresses(self, applied: Plan) -> None:
        if applied.fleet.addressing != "alias":
            return
        recorded = set(read_json(self.state.addresses, []) or [])
        wanted = {d.host for d in applied.devices if d.host}  # a modbus-rtu pty unit has none
        # record first: a crash half-way still leaves down() knowing what to remove
        write_atomic(self.state.addresses, json.dumps(sorted(recorded | wanted)))
        try:
            addresses.add(wanted, applied.fleet.interface, applied.fleet.prefix_length)
        except addresses.AddressError as exc:
            raise BackendError(str(exc)) from None

    def _reload(self) -> None:
        """Apply a rewritten supervisord.conf to the running supervisord (like `supervisorctl update`)."""
        rpc = self._rpc()
        [[added, changed, removed]] = rpc.reloadConfig()
        for name in changed + removed:
            with contextlib.suppress(xmlrpc.client.Fault):
                rpc.stopProcessGroup(name, True)
            rpc.removeProcessGroup(name)
        for name in added + changed:
            rpc.addProcessGroup(name)

    def up(self, only: Sequence[str] | None = None, progress: Progress = no_progress) -> Plan:
        with _one_line_os_errors(), state_lock(self.state, "up", progress=progress):
            return self._up(only, progress)

    def _up(self, only: Sequence[str] | None, progress: Progress) -> Plan:
        running = self.answering()
        selection = self._selection(only, running)
        applied = self._applied(selection)
        progress(0, len(applied.workers) + 1, "writing configuration")
        self._write_files(applied)
        write_atomic(self.state.selection, json.dumps(selection))
        self._add_addresses(applied)
        if running:
            self._reload()
        else:
            self._stop_orphans()  # left by a supervisord that was killed
            try:
                with open_store(self.state.database) as store:
                    store.forget_starts()
            except StoreError as exc:
                raise BackendError(str(exc)) from None
            self._start_supervisord()
        rpc = self._rpc()
        for info in rpc.getAllProcessInfo():
            if info["statename"] in _IDLE:
                with contextlib.suppress(xmlrpc.client.Fault):
                    rpc.startProcess(info["name"], False)
        self._wait_running([w.name for w in applied.workers] + [HEALTH_PROGRAM], progress)
        return applied

    def _wait_running(self, names: Iterable[str], progress: Progress) -> None:
        names = set(names)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            infos = {i["name"]: i for i in self._rpc().getAllProcessInfo() if i["name"] in names}
            done = sum(1 for i in infos.values() if i["statename"] in _SETTLED)
            progress(done, len(names), "starting workers")
            fatal = sorted(n for n, i in infos.items() if i["statename"] == "FATAL")
            if fatal:
                raise BackendError(f"{fatal[0]} could not be started: {self._last_line(fatal[0])}")
            if done == len(names):
                return
            if time.monotonic() > deadline:
                late = sorted(n for n, i in infos.items() if i["statename"] not in _SETTLED)
                raise BackendError(f"{late[0]} still not running after {START_TIMEOUT:.0f} s: "
                                   f"{self._last_line(late[0])}")
            time.sleep(0.1)

    # -- down -----------------------------------------------------------------------------
    def down(self, progress: Progress = no_progress) -> None:
        if not self.state.root.is_dir():
            return  # never brought up here: nothing to stop, and no folder to make
        with _one_line_os_errors(), state_lock(self.state, "down", progress=progress):
            self._down(progress)

    def _down(self, progress: Progress) -> None:
        progress(0, 3, "stopping programs")
        if self.answering():
            rpc = self._rpc()
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                rpc.stopAllProcesses(True)
            progress(1, 3, "stopping supervisord")
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                self._rpc().shutdown()
        pid = self._supervisord_pid()
        if pid is not None:
            _stop_pid(pid, STOP_TIMEOUT)
        self._stop_orphans()
        from fleet.rtu_lines import remove_links

        remove_links(self.plan)
        progress(2, 3, "removing addresses")
        recorded = read_json(self.state.addresses, []) or []
        if recorded:
            try:
                addresses.remove(recorded, self.plan.fleet.interface, self.plan.fleet.prefix_length)
            except addresses.AddressError as exc:
                raise BackendError(str(exc)) from None
        for path in (self.socket, supervisor_conf.pid_path(self.state), self.state.addresses,
                     self.state.selection):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        progress(3, 3, "down")

    def _stop_orphans(self) -> None:
        """Workers or poller left running without supervisord (it was killed): by recorded pid."""
        if not self.state.database.exists():
            return
        try:
            with Store(self.state.database) as store:
                starts = store.starts()
        except StoreError:
            return  # no record of the pids: nothing we can safely stop
        for records in starts.values():
            for pid, _ in records:
                if _cmdline_mentions(pid, str(self.state.root)):
                    _stop_pid(pid, 10.0)

    # -- status, logs, restart --------------------------------------------------------------
    def status(self) -> dict[str, ProgramStatus]:
        if not self.answering():
            return {}
        out = {}
        for info in self._rpc().getAllProcessInfo():
            running = info["statename"] == "RUNNING"
            out[info["name"]] = ProgramStatus(
                name=info["name"], state=ProcessState.from_supervisor(info["statename"]),
                pid=info["pid"] or None, started=float(info["start"]) if running else None,
                detail=info.get("description", ""))
        return out

    def logs(self, program: str, lines: int = 50) -> str:
        path = self.state.log(program)
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 200 * lines))
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:]) + "\n"

    def restart(self, programs: Sequence[str], progress: Progress = no_progress) -> None:
        if not self.answering():
            raise BackendError("the fleet is not up (run `cpppo-fleet up` first)")
        with _one_line_os_errors(), state_lock(self.state, "restart", progress=progress):
            self._restart(programs, progress)

    def _restart(self, programs: Sequence[str], progress: Progress) -> None:
        if not self.answering():
            raise BackendError("the fleet is not up (run `cpppo-fleet up` first)")
        rpc = self._rpc()
        for i, name in enumerate(programs):
            progress(i, len(programs), f"restarting {name}")
            try:
                with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING is fine
                    rpc.stopProcess(name, True)
                rpc.startProcess(name, False)
            except xmlrpc.client.Fault as exc:
                raise BackendError(f"{name}: {exc.faultString}") from None
        self._wait_running(programs, progress)


@contextlib.contextmanager
def _one_line_os_errors() -> Iterator[None]:
    """An OSError from the state folder (read-only, full, ...) as a one-line BackendError."""
    try:
        yield
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise BackendError(f"{where}{exc.strerror or exc}") from None


def _cmdline_mentions(pid: int, text: str) -> bool:
    """Whether process ``pid`` exists and its command line contains ``text`` (guards pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return text in cmdline


def _stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, then SIGKILL after ``timeout``; wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            return
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False
