"""A small process-backend fleet in a temp folder, driven through the CLI (shared by the fleet
tests), and ``until`` for waiting on a condition with a bound."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from fleet.backends.process import ProcessBackend
from fleet.cli import app
from fleet.config import load
from fleet.plan import expand


def until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``check`` every 0.1 s; fail the test if it is not true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)


class CliFleet:
    """``text`` written as ``fleet.toml`` under ``tmp``, its plan, its process backend, and the
    CLI run on it in-process (every command gets the file and ``--state-dir``)."""

    def __init__(self, tmp: Path, text: str, state: Path | None = None) -> None:
        self.path = tmp / "fleet.toml"
        self.state = state or tmp / "state"
        self.path.write_text(text)
        self.plan = expand(load(self.path))
        self.backend = ProcessBackend(self.plan, self.state)

    def invoke(self, *args: str, code: int | None = 0):  # -> click.testing.Result
        result = CliRunner().invoke(app, [*args, str(self.path), "--state-dir", str(self.state)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        if code is not None:
            assert result.exit_code == code, result.output
        assert "Traceback" not in result.output, result.output[-3000:]
        return result

    def cli(self, *args: str, code: int | None = 0) -> str:
        """stdout and stderr, as a terminal shows them."""
        return self.invoke(*args, code=code).output

    def status(self, code: int | None = None) -> dict:
        return json.loads(self.invoke("status", "--json", code=code).stdout)

    def devices(self) -> dict[str, dict]:
        return {d["name"]: d for d in self.status()["devices"]}

    def all_healthy(self) -> bool:
        return all(d["state"] == "healthy" for d in self.devices().values())

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.backend.status().items()}

    def argv(self, *args: str) -> list[str]:
        """The same command as a subprocess (for racing two CLIs)."""
        return [sys.executable, "-c", "import sys; from fleet.cli import main; sys.exit(main())",
                *args, str(self.path), "--state-dir", str(self.state)]
