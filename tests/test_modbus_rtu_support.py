"""Helpers for the Modbus/RTU tests and benchmark (no tests here): pty pairs made by Debian's
socat, our simulator on a serial port as a subprocess, and a pymodbus 3.x serial server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support import python_module, stop

SOCAT = shutil.which("socat")

# A pymodbus 3.x RTU server on a serial port: unit 1 (or the units in argv[2]) with holding
# registers 40001-40100 = 99, coils 1-16 = 0, discrete inputs 10001-10008 = 1, input registers
# 30001-30010 = 5.  pymodbus answers units it does not serve with exception 4 (see issue 19).
PYMODBUS_SERIAL_SERVER = """
import asyncio, logging, sys, warnings
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from pymodbus import FramerType
from pymodbus.server import StartAsyncSerialServer
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSequentialDataBlock as B
def device():
    return ModbusDeviceContext(hr=B(1, [99] * 100), co=B(1, [0] * 16), di=B(1, [1] * 8), ir=B(1, [5] * 10))
units = [int(u) for u in sys.argv[2].split(",")]
context = ModbusServerContext(devices={u: device() for u in units}, single=False)
print("serving", flush=True)
asyncio.run(StartAsyncSerialServer(context, port=sys.argv[1], framer=FramerType.RTU,
                                   baudrate=int(sys.argv[3]), parity="N", stopbits=1, bytesize=8))
"""


def pymodbus_serial_server_argv(port: str, units: Sequence[int] = (1,), baudrate: int = 19200) -> list[str]:
    return [sys.executable, "-c", PYMODBUS_SERIAL_SERVER, port, ",".join(map(str, units)), str(baudrate)]


@contextlib.contextmanager
def started(argv: Sequence[str], expect: str,
            timeout: float = 20.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``argv`` (its own process group, output to a file) until it prints a line matching
    ``expect``; yields the process and that line; always stopped afterwards."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            line = None
            while line is None:
                out.seek(0)
                line = next((x for x in out.read().splitlines() if re.search(expect, x)), None)
                if line is None:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        out.seek(0)
                        raise RuntimeError(f"{argv[0]} did not start ({proc.poll()}): {out.read()[-2000:]}")
                    time.sleep(0.05)
            yield proc, line
        finally:
            stop(proc)


@contextlib.contextmanager
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals made by socat (a null-modem cable): ``(a, b)`` paths."""
    if SOCAT is None:
        raise RuntimeError("Debian's socat is not installed (apt-get install socat)")
    with tempfile.TemporaryDirectory(prefix=f"rtu{os.getpid()}-") as tmp:
        a, b = Path(tmp, "a"), Path(tmp, "b")
        proc = subprocess.Popen([SOCAT, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not (a.exists() and b.exists()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = proc.stderr.read() if proc.poll() is not None else "timed out"
                    raise RuntimeError(f"socat made no pty pair: {why}")
                time.sleep(0.02)
            yield str(a), str(b)
        finally:
            stop(proc)


@contextlib.contextmanager
def rtu_simulator(port: str, *args: str) -> Iterator[subprocess.Popen]:
    """Our `modbus_sim --serial port args...` running until the block ends."""
    argv = python_module("cpppo.bin.modbus_sim", "--serial", port, *args)
    with started(argv, r"^Success; Started Modbus/RTU Simulator") as (proc, _):
        yield proc
