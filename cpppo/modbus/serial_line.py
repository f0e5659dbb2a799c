'''Serial line settings, opening a port with pyserial, and pseudo-terminals.

>>> s = LineSettings(19200, "E", 1)
>>> s.char_bits, round(s.char_time * 1e6), [round(t * 1e3, 3) for t in s.silences]
(11, 573, [0.859, 2.005])
>>> LineSettings.parse(9600, "n", 2).describe()
'9600 8N2'
'''

from __future__ import annotations

import os
import termios
import tty
from dataclasses import dataclass
from typing import Any

from cpppo.modbus import rtu

__all__ = ["PARITIES", "LineSettings", "make_pty", "open_serial"]

PARITIES = {"N": "none", "E": "even", "O": "odd"}
BAUDRATES = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400)


@dataclass(frozen=True)
class LineSettings:
    """How characters go on a serial line: baud rate, parity (N/E/O), stop bits (1/2), and
    whether the simulator keeps the line's timing (``timing``: a reply leaves after the time
    the request and the reply take on the wire, plus t3.5)."""

    baudrate: int = 19200
    parity: str = "E"
    stopbits: int = 1
    bytesize: int = 8
    timing: bool = False

    @classmethod
    def parse(cls, baudrate: Any = 19200, parity: str = "E", stopbits: Any = 1,
              timing: bool = False) -> LineSettings:
        """Checked settings; ValueError naming the bad one."""
        try:
            baud = int(baudrate)
        except (TypeError, ValueError):
            raise ValueError(f"bad baud rate {baudrate!r}: expected a number, e.g. 19200") from None
        if not 50 <= baud <= 4_000_000:
            raise ValueError(f"bad baud rate {baud}: expected 50..4000000, e.g. 9600 or 19200")
        word = str(parity).strip().lower()
        letter = word[:1].upper()
        if letter not in PARITIES or word not in (letter.lower(), PARITIES[letter]):
            raise ValueError(f"bad parity {parity!r}: expected N, E or O (none, even, odd)")
        try:
            stop = int(stopbits)
        except (TypeError, ValueError):
            stop = 0
        if stop not in (1, 2):
            raise ValueError(f"bad stop bits {stopbits!r}: expected 1 or 2")
        return cls(baud, letter, stop, 8, bool(timing))

    @property
    def char_bits(self) -> int:
        """Bits per character on the wire: start, data, parity, stop."""
        return 1 + self.bytesize + (self.parity != "N") + self.stopbits

    @property
    def char_time(self) -> float:
        return rtu.char_time(self.baudrate, self.char_bits)

    @property
    def silences(self) -> tuple[float, float]:
        """``(t1.5, t3.5)`` seconds."""
        return rtu.silences(self.baudrate, self.char_bits)

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


def is_pty(path: str) -> bool:
    """Whether ``path`` (or what it links to) is a pseudo-terminal's slave side."""
    return os.path.realpath(path).startswith("/dev/pts/")


def open_serial(path: str, settings: LineSettings, timeout: float | None = 0) -> Any:
    """``path`` opened with pyserial in raw mode at ``settings``; ValueError with one line
    naming the port when it cannot be.  A pseudo-terminal has no parity: Linux refuses
    (EINVAL) to set one on a pty that was configured before, so a pty is opened without."""
    import serial

    parity = "N" if is_pty(path) else settings.parity
    try:
        return serial.Serial(path, baudrate=settings.baudrate, bytesize=settings.bytesize,
                             parity=parity, stopbits=settings.stopbits, timeout=timeout,
                             write_timeout=None if timeout is None else 2.0)
    except (serial.SerialException, OSError, ValueError, termios.error) as exc:
        text = str(exc).split(": ", 1)[-1] if "could not open port" in str(exc) else str(exc)
        raise ValueError(f"cannot open serial port {path}: {text}") from None


def make_pty() -> tuple[int, int, str]:
    """A new pseudo-terminal in raw mode: ``(master_fd, slave_fd, slave_path)``.  The simulator
    reads and writes the master; a Modbus master opens ``slave_path`` as its serial port.  Keep
    ``slave_fd`` open while serving, so that the master never reads EIO between clients."""
    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)
