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
from collections.abc import Iterator, Sequence
from pathlib import Path

import fleet.backends.supervisor_conf as supervisor_conf
from fleet import addresses
from fleet.backends.base import (
    Backend,
    BackendError,
    ProgramStatus,
    Progress,
    health_programs,
    no_progress,
    read_json,
    write_atomic,
)
from fleet.backends.lock import state_lock
from fleet.limits import poller_shards
from fleet.plan import Plan, devices_to_json
from fleet.states import ProcessState
from fleet.store import Store, StoreError

STOP_TIMEOUT = 30.0  # seconds for supervisord to exit after shutdown
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
    def _write_files(self, applied: Plan, running: bool = False) -> list[str]:
        """Write the worker specs, plan.json and supervisord.conf; return the workers that only
        grew (devices added, none changed): their programs stay as they are (same digest in the
        conf), and ``up`` asks them to serve the new devices."""
        self.state.make()
        digests_path = self.state.workers / "digests.json"
        kept = (read_json(digests_path, {}) or {}) if running else {}
        workers, grown = [], []
        for worker in applied.workers:
            spec = {
                "worker": worker.name,
                "state_dir": str(self.state.root),
                **devices_to_json(applied.worker_devices(worker.name)),  # options once, a row a device
                "max_connections": applied.fleet.worker_max_connections,
            }
            events = self.plan.fault_events(worker.name)  # over the whole fleet: as planned
            if events:
                spec["fault_events"] = events
            text = json.dumps(spec, sort_keys=True, separators=(",", ":"))  # compact: 100,000 devices
            path = self.state.worker_spec(worker.name)
            digest = hashlib.sha1(text.encode()).hexdigest()[:16]
            if worker.name in kept and running and _grows(read_json(path), json.loads(text)):
                digest = kept[worker.name]
                grown.append(worker.name)
            write_atomic(path, text)
            workers.append((worker.name, digest))
        write_atomic(digests_path, json.dumps(dict(workers), indent=1, sort_keys=True))
        self.write_applied(applied)
        conf = supervisor_conf.render(self.state, self.plan.fleet.name, workers, len(applied.devices))
        write_atomic(supervisor_conf.conf_path(self.state), conf)
        return grown

    def _add_addresses(self, applied: Plan) -> None:
        if applied.fleet.addressing != "alias":
            return
        recorded = set(read_json(self.state.addresses, []) or [])
        wanted = {d.host for d in applied.devices if d.host}  # a unit on a serial line has none
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
        applied, selection = self.applied_for(only, running)
        before = self.applied_plan()
        old = dict(read_json(self.state.workers / "digests.json", {}) or {}) if running else {}
        progress(0, len(applied.workers) + 1, "writing configuration")
        grown = self._write_files(applied, running)
        self.write_selection(selection)
        self._add_addresses(applied)
        if running:
            new = dict(read_json(self.state.workers / "digests.json", {}) or {})
            self.interrupts(before, {w for w, digest in old.items() if new.get(w) != digest})
            self._reload()
        else:
            self.interrupts(before, set(self.orphans()))
            self._stop_orphans()  # left by a supervisord that was killed
            self.forget_starts()
            self._start_supervisord()
        rpc = self._rpc()
        for info in rpc.getAllProcessInfo():
            if info["statename"] in _IDLE:
                with contextlib.suppress(xmlrpc.client.Fault):
                    rpc.startProcess(info["name"], False)
        pollers = health_programs(poller_shards(len(applied.devices)))
        self.wait_running([w.name for w in applied.workers] + pollers, progress)
        rpc = self._rpc()
        for name in grown:  # serve the devices added to their specs, the others untouched
            with contextlib.suppress(xmlrpc.client.Fault):
                rpc.signalProcess(name, "HUP")
        return applied

    def program_states(self, names: set[str]) -> dict[str, ProcessState]:
        return {i["name"]: ProcessState.from_supervisor(i["statename"])
                for i in self._rpc().getAllProcessInfo() if i["name"] in names}

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
        from fleet.rtu import remove_links

        remove_links(self.plan.devices)  # the serial lines' links a killed worker left
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
        from fleet.faults import reset

        reset(self.state.root)
        progress(3, 3, "down")

    def _recorded(self) -> dict[str, list[tuple[int, float]]]:
        """Every start the store recorded, by program: [(pid, time), ...] (none if unreadable)."""
        if not self.state.database.exists():
            return {}
        try:
            with Store(self.state.database) as store:
                return store.starts()
        except StoreError:
            return {}  # no record of the pids: nothing we can safely name

    def _stop_orphans(self) -> None:
        """Workers or poller left running without supervisord (it was killed): by recorded pid."""
        for records in self._recorded().values():
            for pid, _ in records:
                if _cmdline_mentions(pid, str(self.state.root)):
                    _stop_pid(pid, 10.0)

    def orphans(self) -> dict[str, ProgramStatus]:
        if self.answering():
            return {}
        out = {}
        for program, records in self._recorded().items():
            for pid, started in reversed(records):
                if _cmdline_mentions(pid, str(self.state.root)) and _alive(pid):
                    out[program] = ProgramStatus(program, ProcessState.RUNNING, pid, started,
                                                 "running without its supervisor")
                    break
        return out

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
        self.wait_running(programs, progress)


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


_DEVICE_KEYS = ("devices", "options", "columns", "rows")  # its devices: fleet.plan.devices_to_json


def _spec_devices(spec: dict) -> dict[str, object] | None:
    """A worker spec's devices by name, each with its options written out (None: not a spec)."""
    try:
        if isinstance(spec.get("rows"), list):
            options = spec["options"]
            at = spec["columns"].index("options")
            return {row[0]: [*row[:at], options[row[at]], *row[at + 1:]] for row in spec["rows"]}
        return {d["name"]: d for d in spec["devices"]}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _grows(old: object, new: dict) -> bool:
    """Whether worker spec ``new`` only adds devices to ``old`` (every other key, and every
    device already there, unchanged)."""
    if not isinstance(old, dict):
        return False
    before, after = _spec_devices(old), _spec_devices(new)
    if before is None or after is None:
        return False
    if {k: v for k, v in old.items() if k not in _DEVICE_KEYS} != \
            {k: v for k, v in new.items() if k not in _DEVICE_KEYS}:
        return False
    return all(after.get(name) == d for name, d in before.items()) and len(after) > len(before)
