"""``cpppo-fleet status --watch`` through a pseudo-terminal: a rich Live table redrawn in place
(cursor movements, not a scroll of tables), worst devices first, under the summary header."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from fleet.cli.watch import header, recent_restarts, worst_first
from tests.fleet_support import until
from tests.web_support import live_fleet

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_pty(argv: list[str], timeout: float = 60.0, columns: int = 200, lines: int = 40) -> str:
    """Run ``argv`` on a pseudo-terminal of the given size; everything it wrote, raw."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(lines)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(10) == 0, out.decode(errors="replace")[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    return out.decode(errors="replace")


def test_watch_redraws_in_place_worst_first(tmp_path: Path) -> None:
    with live_fleet(tmp_path, f"watch{os.getpid()}", 133) as fleet:
        worker = fleet.plan.devices[-1].worker  # pump1 and pump2's
        hung = sorted(d.name for d in fleet.plan.devices if d.worker == worker)
        pid = fleet.pids()[worker]
        os.kill(pid, signal.SIGSTOP)
        try:
            until(lambda: {d["name"] for d in fleet.status()["devices"] if d["state"] == "down"} == set(hung),
                  30, "the hung worker's devices down")
            raw = run_in_pty(fleet.argv("status", "--watch", "--count", "3", "--interval", "0.3"))
        finally:
            os.kill(pid, signal.SIGCONT)
    assert raw.count("\x1b[1A") >= 3 or raw.count("\x1b[2K") >= 3  # redrawn in place
    text = ANSI.sub("", raw)
    assert text.count(f"fleet {fleet.plan.fleet.name}: 2/4 healthy") >= 3  # a header per refresh
    assert "restarts in the last minute" in text and "p50" in text and "p99" in text
    last = text.rsplit(f"fleet {fleet.plan.fleet.name}: 2/4 healthy", 1)[1]
    order = [name for name in re.findall(r"\b(line\d|pump\d)\b", last)]
    assert order[:2] == hung and sorted(order[2:4]) == ["line1", "line2"]  # worst first
    assert "down" in last and "healthy" in last


def test_summary_pieces() -> None:
    from fleet.report import DeviceReport
    from fleet.states import DeviceState

    def report(name: str, state: DeviceState, latency: float | None) -> DeviceReport:
        return DeviceReport(name, "enip", "h:1", "w0", state, None, 0, None, None, None, latency, None, None)

    reports = [report("a", DeviceState.HEALTHY, 0.002), report("b", DeviceState.DOWN, None),
               report("c", DeviceState.HEALTHY, 0.009), report("d", DeviceState.FAILED, None)]
    assert [r.name for r in worst_first(reports)] == ["d", "b", "c", "a"]
    line = header("f", reports, {"w0": [(1, 0.0), (2, 990.0), (3, 995.0)]}, 1000.0)
    assert line.startswith("fleet f: 2/4 healthy · p50 2.0 ms · p99 9.0 ms · 2 restarts in the last minute")
    assert recent_restarts({"w0": [(1, 0.0), (2, 10.0)]}, 1000.0) == 0
