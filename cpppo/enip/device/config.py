"""``cpppo.cfg``: identity and TCP/IP interface values for the simulated controller (spec 2.1.2).

Files are read in order, later ones overriding earlier: ``/etc/cpppo.cfg``, ``~/.cpppo.cfg``,
``./cpppo.cfg``, then any given with ``-c/--config``.  Sections and keys::

    [Identity]
    Product Name = 1756-L61/B LOGIX5561        # plain strings need no quotes
    Serial Number = 0x006C061A                  # numbers in any Python base
    Product Revision = 20.11
    [TCPIP]
    Interface Configuration = {"ip_address": "192.168.0.201", "network_mask": "255.255.255.0",
                               "dns_primary": "8.8.8.8", "domain_name": "example.com"}
    Host Name = controller

Values that parse as JSON are taken as JSON, others as text.  An unknown section, key or a
bad value raises ``ConfigError`` naming the file, section and key.
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "EnipConfig", "default_paths", "load"]


class ConfigError(ValueError):
    """A bad cpppo.cfg: the message names the file, section and key."""


IDENTITY_KEYS = {
    "vendor_number": "vendor_id", "vendor_id": "vendor_id", "vendor": "vendor_id",
    "device_type": "device_type", "product_type": "device_type",
    "product_code_number": "product_code", "product_code": "product_code",
    "product_revision": "revision", "revision": "revision",
    "status_word": "status", "status": "status",
    "serial_number": "serial_number",
    "product_name": "product_name",
    "state": "state",
    "program_name": "program_name",
}
TCPIP_KEYS = {
    "interface_configuration": None,  # a JSON object of the keys below
    "ip_address": "ip_address", "network_mask": "network_mask", "gateway_address": "gateway_address",
    "dns_primary": "dns_primary", "dns_secondary": "dns_secondary", "domain_name": "domain_name",
    "host_name": "host_name", "mac_address": "mac_address", "physical_address": "mac_address",
    "interface_speed": "interface_speed", "status": "status",
    "configuration_capability": "configuration_capability", "configuration_control": "configuration_control",
}
INTERFACE_KEYS = ("ip_address", "network_mask", "gateway_address", "dns_primary", "dns_secondary",
                  "domain_name")


@dataclass
class EnipConfig:
    identity: dict[str, Any] = field(default_factory=dict)
    tcpip: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def default_paths() -> list[Path]:
    paths = [Path("/etc/cpppo.cfg")]
    if os.environ.get("APPDATA"):
        paths.append(Path(os.environ["APPDATA"]) / "cpppo.cfg")
    paths += [Path.home() / ".cpppo.cfg", Path("cpppo.cfg")]  # relative: the current directory
    return paths


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text.strip()


def _normal(key: str) -> str:
    return "_".join(key.strip().lower().replace("-", " ").split())


def load(extra: Sequence[str | Path] = (), defaults: Iterable[Path] | None = None) -> EnipConfig:
    """Read the default locations (those that exist) and ``extra`` files (which must exist)."""
    config = EnipConfig()
    candidates = [(p, False) for p in (default_paths() if defaults is None else defaults)]
    candidates += [(Path(p), True) for p in extra]
    for path, required in candidates:
        if not path.exists():
            if required:
                raise ConfigError(f"{path}: no such configuration file")
            continue
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment, method-assign]
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
        for section in parser.sections():
            name = section.strip().lower()
            if name not in ("identity", "tcpip"):
                continue  # other sections belong to other cpppo tools
            for key, raw in parser.items(section):
                _apply(config, path, section, key, _value(raw))
        config.files.append(str(path))
    return config


def _apply(config: EnipConfig, path: Path, section: str, key: str, value: Any) -> None:
    where = f"{path}: [{section}] {key}"
    norm = _normal(key)
    if section.strip().lower() == "identity":
        if norm not in IDENTITY_KEYS:
            raise ConfigError(f"{where}: unknown Identity key")
        target = IDENTITY_KEYS[norm]
        if target == "revision" and isinstance(value, float):
            value = str(value)
        if target in ("product_name", "program_name"):
            value = str(value)
        elif target != "revision":
            try:
                value = int(value, 0) if isinstance(value, str) else int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {value!r} is not a number") from None
        config.identity[target] = value
        return
    if norm not in TCPIP_KEYS:
        raise ConfigError(f"{where}: unknown TCPIP key")
    if TCPIP_KEYS[norm] is None:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: must be a JSON object of {', '.join(INTERFACE_KEYS)}")
        for sub, subvalue in value.items():
            if sub not in INTERFACE_KEYS:
                raise ConfigError(f"{where}: unknown field {sub!r}")
            config.tcpip[sub] = str(subvalue)
        return
    config.tcpip[TCPIP_KEYS[norm]] = value
