"""Helpers shared by the test suite and the benchmarks: free ports, waiting for a listener,
and subprocesses that are always cleaned up (by pid, never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """An ephemeral port that is free on ``host`` right now (for TCP and, usually, UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Block until a TCP connect to (host, port) succeeds; raise with the process output if
    ``proc`` dies first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening: {out}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@contextlib.contextmanager
def running(argv: Sequence[str], *, listen: tuple[str, int] | None = None, timeout: float = 20.0,
            env: dict[str, str] | None = None, cwd: str | Path | None = None) -> Iterator[subprocess.Popen]:
    """Run ``argv`` in its own process group for the duration of the block, waiting for it to
    listen on ``listen`` first; always stopped afterwards."""
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, **(env or {})}, cwd=cwd,
    )
    try:
        if listen:
            wait_port(*listen, timeout=timeout, proc=proc)
        yield proc
    finally:
        stop(proc)


def python_module(module: str, *args: str, python: str | Path = sys.executable) -> list[str]:
    """argv for ``python -I -m module args...``.

    Isolated mode (-I) keeps the current directory off ``sys.path``, so that the upstream
    virtualenv's interpreter, run from this repository, imports its own ``cpppo`` and not ours."""
    return [str(python), "-I", "-m", module, *args]
