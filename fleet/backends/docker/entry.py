"""The device container's main process: ``python -m fleet.backends.docker.entry``.

The docker backend passes the worker spec (``{"worker": name, "devices": [PlannedDevice
JSON, ...]}``) in the ``CPPPO_FLEET_SPEC`` environment variable and this serves it with
:mod:`fleet.worker`, exactly as a process-backend worker.  A container of one device runs as
the image's non-root user with no capabilities: docker gives it its one address.  A container
of several devices is started as root with only NET_ADMIN, SETUID and SETGID: it adds the
other devices' addresses to the interface whose subnet holds them, then drops to the non-root
user (losing every capability) before serving anything.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import pwd
import subprocess
import sys

from fleet.worker import run

SPEC_VARIABLE = "CPPPO_FLEET_SPEC"
USER = "fleet"  # the image's non-root user

log = logging.getLogger("fleet.docker_entry")


def interfaces() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """(interface name, address/prefix) of every IPv4 address in this network namespace."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return [(fields[1], ipaddress.IPv4Interface(fields[3])) for fields in map(str.split, out.splitlines())]


def add_addresses(hosts: list[str]) -> list[str]:
    """Add each host address that is not yet local to the interface whose subnet holds it;
    return the commands run.  Raises RuntimeError (one line) when no interface fits."""
    present = interfaces()
    local = {str(addr.ip) for _, addr in present}
    commands = []
    for host in dict.fromkeys(hosts):
        if host in local:
            continue
        ip = ipaddress.IPv4Address(host)
        fits = [(name, addr) for name, addr in present if ip in addr.network and name != "lo"]
        if not fits:
            raise RuntimeError(f"no interface of this container is on a subnet holding {host}")
        name, addr = fits[0]
        command = ["ip", "addr", "add", f"{host}/{addr.network.prefixlen}", "dev", name]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10)
        if proc.returncode != 0 and "File exists" not in proc.stderr:
            raise RuntimeError(f"{' '.join(command)}: {proc.stderr.strip()}")
        commands.append(" ".join(command))
    return commands


def drop_privileges(user: str = USER, keep_group: int | None = None) -> None:
    """Become ``user`` (and its group, plus ``keep_group``: the host group owning the control
    folder): a uid change from 0 clears every capability."""
    entry = pwd.getpwnam(user)
    os.setgroups([] if keep_group is None else [keep_group])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    text = os.environ.get(SPEC_VARIABLE)
    if not text:
        print(f"docker_entry: no worker spec in ${SPEC_VARIABLE}", file=sys.stderr)
        return 2
    try:
        spec = json.loads(text)
        hosts = [device["host"] for device in spec["devices"]]
    except (ValueError, KeyError, TypeError) as exc:
        print(f"docker_entry: bad worker spec in ${SPEC_VARIABLE}: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        try:
            for command in add_addresses(hosts):
                log.info("%s", command)
            drop_privileges(keep_group=spec.get("control_group"))
        except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as exc:
            print(f"docker_entry: {exc}", file=sys.stderr)
            return 1
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
