"""What the docker backend creates its containers from: the create keywords of a device
container and of the health poller's, and the digest ``up`` compares to decide whether an
existing container still matches."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fleet.backends.base import HEALTH_PROGRAM
from fleet.backends.docker.entry import SPEC_VARIABLE
from fleet.backends.docker.layout import ContainerSpec, NetworkSpec
from fleet.plan import Plan

LABEL = "cpppo-fleet"  # label prefix: cpppo-fleet.fleet, .worker, .device, .role, .digest
POLLER_MEMORY = "256m"
STATE_MOUNT = "/state"  # where the poller sees the state folder
CONTROL_MOUNT = "/control"  # where a device container sees the fleet's control folder
FILES_MOUNT = "/fleet-files"  # a file the fleet file names is seen at FILES_MOUNT + its host path
RETAIN_MOUNT = "/retain"  # where a device container sees the state folder's retain/ (journals)
_NS = 1_000_000_000


def healthcheck_interval(containers: int) -> float:
    """Seconds between Docker health probes.  Each probe is a Python process exec'd in the
    container (about 0.1 s of CPU with runc's share), so a big fleet spaces them out to about
    two probes a second in all; the fleet's own poller checks every device every few seconds.

    >>> healthcheck_interval(5), healthcheck_interval(300)
    (30.0, 150.0)
    """
    return max(30.0, containers / 2)


def digest(config: dict[str, Any], endpoints: Any) -> str:
    """What a container was created from: a changed one is replaced by ``up``."""
    return hashlib.sha256(json.dumps([config, endpoints], sort_keys=True).encode()).hexdigest()[:16]


def device_config(plan: Plan, spec: ContainerSpec, image: str, labels: dict[str, str],
                  healthcheck: float, control: Path | None = None,
                  epoch: float | None = None, files: dict[str, tuple[str, ...]] | None = None,
                  retain: Path | None = None) -> dict[str, Any]:
    """create_container keywords (plus ``host_config`` and ``endpoints``) for a device container.
    ``control``: the host's control folder, bind-mounted at CONTROL_MOUNT so that ``cpppo-fleet
    fault`` reaches the worker (its socket is group-owned by the host user's group); ``epoch``:
    when the fleet's fault schedule started; ``files``: the host files each device reads
    (:func:`fleet.worker.files_base`), each bind-mounted read-only at FILES_MOUNT + its path;
    ``retain``: the host's retain folder, mounted at RETAIN_MOUNT when a device retains writes."""
    fleet = plan.fleet
    files = files or {}
    devices = [d._replace(files_root=FILES_MOUNT).to_json() if files.get(d.name) else d.to_json()
               for d in spec.devices]
    worker_spec: dict[str, Any] = {"worker": spec.worker, "devices": devices,
                                   "max_connections": fleet.worker_max_connections}
    binds = {path: {"bind": FILES_MOUNT + os.path.normpath(path), "mode": "ro"}
             for d in spec.devices for path in files.get(d.name, ())}
    retained = retain is not None and any(d.retain for d in spec.devices)
    if retained:
        worker_spec["retain_root"] = str(Path(RETAIN_MOUNT).parent)  # fleet.worker.retain_path
        binds[str(retain)] = {"bind": RETAIN_MOUNT, "mode": "rw"}
    if control is not None:
        worker_spec.update(control_dir=CONTROL_MOUNT, control_group=os.getgid())
        events = plan.fault_events(spec.worker)
        if events:
            worker_spec.update(fault_events=events, fault_epoch=epoch)
    env = {SPEC_VARIABLE: json.dumps(worker_spec, separators=(",", ":"))}
    grouped = spec.extra_addresses
    host = dict(
        restart_policy={"Name": "unless-stopped"}, mem_limit=fleet.docker_memory,
        memswap_limit=fleet.docker_memory, read_only=True, tmpfs={"/tmp": "size=8m"},
        cap_drop=["ALL"], cap_add=["NET_ADMIN", "SETUID", "SETGID"] if grouped else None,
        security_opt=["no-new-privileges"], pids_limit=64,
        sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},  # Modbus 502 without root
        log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "2"}})
    if control is not None:
        binds[str(control)] = {"bind": CONTROL_MOUNT, "mode": "rw"}
    if binds:
        host.update(binds=binds)
    if control is not None or retained:  # the folders are group-writable for the host user's group
        host.update(group_add=[str(os.getgid())])
    labels = {**labels, f"{LABEL}.worker": spec.worker,
              f"{LABEL}.device": ",".join(d.name for d in spec.devices)}
    check = {"test": ["CMD", "python", "-m", "fleet.backends.docker.probe"],
             "interval": int(healthcheck * _NS), "timeout": 10 * _NS, "retries": 3,
             "start_period": int(healthcheck * _NS)}
    return dict(image=image, name=spec.name, hostname=spec.hostname, environment=env, labels=labels,
                user="0" if grouped else None, healthcheck=check, host_config=host,
                endpoints=spec.endpoints)


def poller_config(plan: Plan, nets: list[NetworkSpec], state_root: Path, image: str,
                  labels: dict[str, str]) -> dict[str, Any]:
    """The same for the health poller's container (given ``up``'s $CPPPO_FLEET_TOKEN, the fleet
    page's write token, when it is set)."""
    from fleet.web.app import TOKEN_VARIABLE

    env = {TOKEN_VARIABLE: os.environ[TOKEN_VARIABLE]} if os.environ.get(TOKEN_VARIABLE) else {}
    host = dict(
        restart_policy={"Name": "unless-stopped"}, mem_limit=POLLER_MEMORY, memswap_limit=POLLER_MEMORY,
        read_only=True, tmpfs={"/tmp": "size=8m"}, cap_drop=["ALL"], security_opt=["no-new-privileges"],
        binds={str(state_root): {"bind": STATE_MOUNT, "mode": "rw"}},
        log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "2"}})
    return dict(image=image, name=f"{plan.fleet.name}-{HEALTH_PROGRAM}", hostname=HEALTH_PROGRAM,
                entrypoint=["python", "-m", "fleet.health", STATE_MOUNT], environment=env,
                labels={**labels, f"{LABEL}.role": HEALTH_PROGRAM},
                user=f"{os.getuid()}:{os.getgid()}",  # its files in the state folder stay the user's
                healthcheck={"test": ["NONE"]}, host_config=host,
                endpoints=tuple((n.name, n.poller) for n in nets))
