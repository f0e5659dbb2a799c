"""Alias addressing: add the devices' addresses to a named interface (root), and remove them
again.  Loopback addressing needs nothing: all of 127.0.0.0/8 is local on Linux."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable


class AddressError(RuntimeError):
    """Adding or removing addresses failed; one line."""


def _ip_batch(commands: list[str]) -> None:
    if not commands:
        return
    if shutil.which("ip") is None:
        raise AddressError("alias addressing needs iproute2's `ip` command")
    if os.geteuid() != 0:
        raise AddressError("alias addressing needs root (it adds addresses to an interface)")
    # -force: carry on past "exists" / "cannot assign" errors so that the batch is idempotent
    proc = subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines()
              if line.strip() and "File exists" not in line and "Cannot assign" not in line
              and not line.startswith("Command failed")]
    if errors:
        raise AddressError(f"ip: {errors[0]}")


def present(interface: str) -> set[str]:
    """The IPv4 addresses on ``interface`` now."""
    proc = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", interface],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AddressError(f"interface {interface!r}: {proc.stderr.strip() or 'not found'}")
    return {fields[3].split("/")[0] for fields in (line.split() for line in proc.stdout.splitlines())
            if len(fields) > 3}


def add(addresses: Iterable[str], interface: str, prefix_length: int) -> list[str]:
    """Add the missing ``addresses`` to ``interface``; return those added."""
    have = present(interface)
    missing = sorted(set(addresses) - have)
    _ip_batch([f"address add {a}/{prefix_length} dev {interface}" for a in missing])
    return missing


def remove(addresses: Iterable[str], interface: str, prefix_length: int) -> None:
    """Remove ``addresses`` from ``interface`` (those not there are ignored)."""
    try:
        have = present(interface)
    except AddressError:
        return  # the interface is gone, and its addresses with it
    _ip_batch([f"address del {a}/{prefix_length} dev {interface}" for a in sorted(set(addresses) & have)])
