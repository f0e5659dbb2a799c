"""Allen-Bradley devices as ``get_attribute`` proxies.

``powerflex`` is a simple (non-routing) A-B PowerFlex AC drive; ``powerflex_750_series`` adds
the named DPI parameters of the 750 series (CIP class 0x93, attribute 10 of each parameter
instance), so that ``via.parameter_substitution("Motor Velocity")`` reads ``@0x93/3/10``.
"""

from __future__ import annotations

from cpppo.server.enip.get_attribute import parameter, proxy_simple

__all__ = ["powerflex", "powerflex_750_series"]


class powerflex(proxy_simple):  # noqa: N801 - the spec's public name
    """A simple (non-routing) A-B PowerFlex AC drive."""


def _dpi(instance: int, types: str, units: str) -> parameter:
    return parameter(f"@0x93/{instance}/10", types, units)


class powerflex_750_series(powerflex):  # noqa: N801 - the spec's public name
    """The PowerFlex 750 series parameters, by name."""

    PARAMETERS = dict(
        powerflex.PARAMETERS,
        output_frequency=_dpi(1, "REAL", "Hz"),
        output_freq=_dpi(1, "REAL", "Hz"),
        mtr_vel_fdbk=_dpi(3, "REAL", "Hz/RPM"),
        motor_velocity=_dpi(3, "REAL", "Hz/RPM"),   # in Speed Units
        output_current=_dpi(7, "REAL", "Amps"),
        output_voltage=_dpi(8, "REAL", "VAC"),
        output_power=_dpi(9, "REAL", "kW"),
        dc_bus_volts=_dpi(11, "REAL", "VDC"),
        elapsed_mwh=_dpi(13, "REAL", "MWh"),
        elapsed_kwh=_dpi(14, "REAL", "kWh"),
        elapsed_run_time=_dpi(15, "REAL", "Hrs"),
        rated_volts=_dpi(20, "REAL", "VAC"),
        rated_amps=_dpi(21, "REAL", "Amps"),
        rated_kw=_dpi(22, "REAL", "kW"),
        speed_units=_dpi(300, "DINT", "Hz/RPM"),      # 0: Hz, 1: RPM
    )
