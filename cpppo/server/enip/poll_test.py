"""``python -m cpppo.server.enip.poll_test``: a simulated Allen-Bradley PowerFlex 750 drive.

Its parameters are DPI Parameter Object (class 0x93) instances; attribute 10 (and 9, the same
value) holds each parameter's value, as the spec's poll examples read them (``@0x93/3/10``
is Motor Velocity).  A simple, non-routing CIP device: ``-S`` is implied unless a
``--route-path`` is given.  Other ``enip_server`` options and extra tags may be added.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cpppo.enip.cli.server import main as enip_main
from cpppo.enip.device.model import Device

__all__ = ["IDENTITY", "PARAMETERS", "main"]

#: name, DPI parameter instance, type, default value, units
PARAMETERS: tuple[tuple[str, int, str, float, str], ...] = (
    ("Output_Frequency", 1, "REAL", 456.78, "Hz"),
    ("Motor_Velocity", 3, "REAL", 789.01, "Hz/RPM"),
    ("Output_Current", 7, "REAL", 123.45, "Amps"),
    ("Output_Voltage", 8, "REAL", 460.0, "VAC"),
    ("Output_Power", 9, "REAL", 7.5, "kW"),
    ("DC_Bus_Volts", 11, "REAL", 0.08, "VDC"),
    ("Elapsed_MWh", 13, "REAL", 0.98765, "MWh"),
    ("Elapsed_KwH", 14, "REAL", 987.65, "kWh"),
    ("Elapsed_Run_Time", 15, "REAL", 1234.5, "Hrs"),
    ("Rated_Volts", 20, "REAL", 480.0, "VAC"),
    ("Rated_Amps", 21, "REAL", 14.0, "Amps"),
    ("Rated_kW", 22, "REAL", 7.5, "kW"),
    ("Accel_Time_1", 140, "INT", 567, "Secs"),
    ("Speed_Units", 300, "DINT", 1, "0: Hz, 1: RPM"),
)

IDENTITY = {"product_name": "PowerFlex 753", "device_type": 0x7B, "product_code": 0x900, "revision": (11, 1),
            "serial_number": 0x0A0B0C0D, "status": 0x0030}


def specs() -> list[str]:
    return [f"{name}@0x93/{instance}/10={ctype}" for name, instance, ctype, _, _ in PARAMETERS]


def install(device: Device) -> None:
    """Set the parameters' values and alias attribute 9 to attribute 10."""
    for name, instance, _, value, _ in PARAMETERS:
        attribute = device.tag(name).attribute  # type: ignore[union-attr]
        attribute[0:1] = [value]
        device.objects[(0x93, instance)][9] = attribute


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--route-path" or a.startswith("--route-path=") for a in args):
        args.insert(0, "--simple")
    return enip_main([*args, *specs()], identity=IDENTITY, customize=install, prog="poll_test",
                     tags_required=False)


if __name__ == "__main__":
    raise SystemExit(main())
