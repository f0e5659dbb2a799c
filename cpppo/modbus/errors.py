"""The exceptions of the Modbus layers.

Every Modbus error derives from :class:`ModbusException` and carries a one-line message:

- :class:`FrameError`: bytes that are not a valid MBAP frame (bad protocol id, bad length); the
  only exception :func:`cpppo.modbus.framer.decode` raises.  A server closes the connection.
- :class:`RequestError`: a PDU that is not a valid request; carries the Modbus exception code to
  answer with (1: unknown function, 3: bad quantity or byte count).  The only exception
  :func:`cpppo.modbus.pdu.decode_request` raises.
- :class:`ResponseError`: a reply PDU that does not fit its request (client side).
- :class:`ExceptionResponse`: the device answered with a Modbus exception code.
- :class:`ModbusConnectionError`: the connection could not be made or was lost.

Timeouts raise the built-in :class:`TimeoutError`.
"""

from __future__ import annotations

import enum

__all__ = [
    "ExceptionCode", "ExceptionResponse", "FrameError", "ModbusConnectionError", "ModbusException",
    "RequestError", "ResponseError",
]


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes (Modbus Application Protocol v1.1b3, section 7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_FAILED = 0x0B


def describe_code(code: int) -> str:
    """A readable name for an exception code, also for codes outside the standard set."""
    try:
        return ExceptionCode(code).name.lower().replace("_", " ")
    except ValueError:
        return f"exception code {code}"


class ModbusException(Exception):
    """Base of every Modbus error."""


class FrameError(ModbusException):
    """The bytes are not a valid Modbus/TCP (MBAP) frame."""


class RequestError(ModbusException):
    """A request PDU that must be answered with the Modbus exception ``code``."""

    def __init__(self, function: int, code: int, message: str) -> None:
        super().__init__(message)
        self.function = function
        self.code = code


class ResponseError(ModbusException):
    """A reply PDU that is malformed or does not answer the request sent."""


class ExceptionResponse(ModbusException):
    """The device answered ``function`` with exception ``code``."""

    def __init__(self, function: int, code: int) -> None:
        super().__init__(f"function 0x{function:02x} answered {describe_code(code)} ({code})")
        self.function = function
        self.code = code


class ModbusConnectionError(ModbusException, ConnectionError):
    """Could not connect to the device, or the connection was lost."""
