"""The docker backend: the plan's workers as containers, through the docker SDK.

Each container hosts one plan worker (``devices_per_container`` devices, one by default) at
the devices' own addresses on the fleet's networks (:mod:`fleet.backends.docker.layout`), runs
:mod:`fleet.worker` under the image's non-root user (:mod:`fleet.backends.docker.entry`), and
is kept running by Docker's restart policy.  Everything created carries the label
``cpppo-fleet.fleet=<name>``, which is all ``down`` needs to remove it, leftovers of an
interrupted ``up`` included.

The health poller (:mod:`fleet.health`, unchanged) runs in a container of its own, attached to
every network of the fleet with the state folder mounted, rather than as a host process: Docker
supervises it with the same restart policy and ``down`` removes it with the rest; it reaches
the devices in macvlan mode, where the host itself cannot without a shim interface; and the
fleet leaves no process behind on the host.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet.backends.base import (
    HEALTH_PROGRAM,
    Backend,
    BackendError,
    ProgramStatus,
    Progress,
    no_progress,
)
from fleet.backends.docker.containers import (
    LABEL,
    device_config,
    healthcheck_interval,
    poller_config,
)
from fleet.backends.docker.containers import digest as _digest
from fleet.backends.docker.layout import ContainerSpec, NetworkSpec, containers, networks
from fleet.plan import Plan, PlannedDevice
from fleet.states import ProcessState
from fleet.store import Store, StoreError

LABELS_VARIABLE = "CPPPO_FLEET_DOCKER_LABELS"  # extra labels, "k=v,k2=v2"
PARALLEL = 16  # docker API calls in flight during up / down / status

# docker's container states -> ProcessState
_STATES = {
    "created": ProcessState.STARTING, "running": ProcessState.RUNNING,
    "restarting": ProcessState.BACKOFF, "exited": ProcessState.EXITED, "paused": ProcessState.STOPPED,
    "removing": ProcessState.STOPPING, "dead": ProcessState.FATAL,
}


def parallel(items: Iterable[Any], work: Callable[[Any], Any], progress: Progress, what: str) -> list[Any]:
    """``work`` over ``items`` on PARALLEL threads, reporting progress; results in order."""
    items = list(items)
    progress(0, len(items), what)
    results = []
    with ThreadPoolExecutor(PARALLEL) as pool:
        for done, result in enumerate(pool.map(work, items), 1):
            results.append(result)
            progress(done, len(items), what)
    return results


def files_read(device: PlannedDevice) -> tuple[str, ...]:
    """The host files a device reads (``tags_from`` exports, playback recordings): noted while
    building it as its worker will (only devices naming such files are built)."""
    if not (getattr(device.options, "tags_from", ()) or "playback" in repr(device.options)):
        return ()
    from fleet.kinds import KINDS
    from fleet.worker import files_base

    host, seen = files_base(device), []

    def base(name: str) -> str:
        seen.append(host(name))
        return seen[-1]

    try:
        KINDS[device.kind].build(device.options, device.identity_dict, n=device.n, home=base)
    except ValueError as exc:
        raise BackendError(f"{device.name}: {exc}") from None
    return tuple(dict.fromkeys(seen))


def by_network(items: Iterable[Any], networks: Callable[[Any], Iterable[str]]) -> list[Any]:
    """``items`` in the order that keeps most networks busy at once: those on several networks
    (the poller) first, then one item of each network in turn (round-robin), so PARALLEL threads
    holding :meth:`DockerBackend.attaching` locks seldom wait for one another.

    >>> by_network(["a1", "a2", "a3", "b1", "c1", "c2", "ab"], lambda i: ["a", "b"] if i == "ab" else [i[0]])
    ['ab', 'a1', 'b1', 'c1', 'a2', 'c2', 'a3']
    """
    shared, queues = [], {}
    for item in items:
        nets = sorted(set(networks(item)))
        if len(nets) > 1:
            shared.append(item)
        else:
            queues.setdefault(nets[0] if nets else "", []).append(item)
    rounds = itertools.zip_longest(*queues.values())
    return shared + [item for round_ in rounds for item in round_ if item is not None]


def _networks_of(container: dict) -> list[str]:
    """The networks of a container as docker lists it."""
    return list(((container.get("NetworkSettings") or {}).get("Networks") or {}).keys())


def _epoch(stamp: str) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, Z) -> epoch seconds; None for the zero time."""
    if not stamp or stamp.startswith("0001-"):
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


class DockerBackend(Backend):
    """Workers as containers; the health poller as one more."""

    name = "docker"

    def __init__(self, plan: Plan, state_dir: Path, *, labels: dict[str, str] | None = None,
                 client: Any = None, healthcheck: float | None = None) -> None:
        super().__init__(plan, state_dir)
        if labels is None:  # "k=v,k2=v2": extra labels for everything created (CI bookkeeping)
            extra = os.environ.get(LABELS_VARIABLE, "")
            labels = dict(item.split("=", 1) for item in extra.split(",") if "=" in item)
        self.labels = {f"{LABEL}.fleet": plan.fleet.name, **labels}
        self._client = client
        self.networks: list[NetworkSpec] = networks(plan)
        self.containers: list[ContainerSpec] = containers(plan, self.networks)
        self.healthcheck = healthcheck or healthcheck_interval(len(self.containers))
        self._network_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @contextlib.contextmanager
    def attaching(self, networks: Iterable[str]) -> Iterator[None]:
        """Hold the locks of these networks (in name order) while containers join or leave them.

        Docker 20.10 keeps a per-network endpoint count that concurrent joins or leaves on one
        network can leave wrong (moby#17217: "network has active endpoints" once every
        container is gone, and only a dockerd restart clears it).  On this project's dockerd
        20.10.24 both were seen: 30 containers started in parallel, then removed in parallel,
        and 40 started while 40 others were removed.  So the backend starts, restarts and
        removes one network's containers one at a time, and runs as many networks at once as
        it has threads (:func:`by_network`); creating containers involves no network and is
        fully parallel.  The fleet's bridges are small (``docker_bridge_prefix``) so that a big
        fleet has many of them."""
        with self._locks_lock:
            locks = [self._network_locks.setdefault(n, threading.Lock()) for n in sorted(set(networks))]
        with contextlib.ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            yield

    # -- docker plumbing --------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env(timeout=120, max_pool_size=PARALLEL + 4)
                self._client.ping()
            except docker.errors.DockerException as exc:
                raise BackendError(f"no Docker engine answers: {str(exc).splitlines()[0]}") from None
        return self._client

    @property
    def api(self) -> Any:
        return self.client.api

    def close(self) -> None:
        """Close the docker client (if one was opened)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _filters(self) -> dict[str, list[str]]:
        return {"label": [f"{LABEL}.fleet={self.plan.fleet.name}"]}

    def _listed(self) -> dict[str, dict]:
        """The fleet's containers as docker lists them, by program name (worker or 'health')."""
        out = {}
        for c in self.api.containers(all=True, filters=self._filters()):
            program = c["Labels"].get(f"{LABEL}.worker") or c["Labels"].get(f"{LABEL}.role")
            if program:
                out[program] = c
        return out

    def image(self, log: Callable[[str], None] = lambda line: None) -> str:
        """The device image: ``docker_image`` as given, else the project's own, built as needed."""
        import docker.errors

        if self.plan.fleet.docker_image:
            try:
                return self.client.images.get(self.plan.fleet.docker_image).id
            except docker.errors.ImageNotFound:
                raise BackendError(f"docker_image {self.plan.fleet.docker_image!r} not found") from None
        from fleet.backends.docker.image import build_device_image

        return self.client.images.get(build_device_image(self.client, log=log)).id

    # -- up ---------------------------------------------------------------------------------
    def _ensure_networks(self) -> None:
        import docker.types

        existing = {n["Name"]: n for n in self.api.networks(filters=self._filters())}
        for net in self.networks:
            found = existing.get(net.name)
            if found is not None:
                subnets = [c.get("Subnet") for c in (found.get("IPAM") or {}).get("Config") or []]
                if subnets == [net.subnet] and found.get("Driver") == net.driver:
                    continue
                raise BackendError(f"network {net.name} exists with subnet {subnets} "
                                   f"({found.get('Driver')}); the plan wants {net.subnet} ({net.driver}): "
                                   "run `cpppo-fleet down` first")
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=net.subnet,
                                                                               gateway=net.gateway)])
            try:
                self.api.create_network(net.name, driver=net.driver, ipam=ipam, options=net.options,
                                        labels={**self.labels, f"{LABEL}.role": "network"},
                                        check_duplicate=True)
            except docker.errors.APIError as exc:
                raise BackendError(f"cannot create network {net.name} ({net.subnet}): "
                                   f"{exc.explanation or exc}") from None

    def _neighbour_room(self) -> list[str]:
        """Room in the kernel's neighbour tables for every device address on the fleet's bridges
        and the poller's address on each (a macvlan's devices are the LAN's neighbours, not
        this host's)."""
        from fleet.limits import make_neighbour_room

        bridges = {n.name for n in self.networks if n.driver == "bridge"}
        addresses = len(bridges) + sum(len({d.host for d in c.devices}) for c in self.containers
                                       if any(net in bridges for net, _ in c.endpoints))
        try:
            return make_neighbour_room(addresses)
        except PermissionError as exc:
            raise BackendError(str(exc)) from None

    def _device_config(self, spec: ContainerSpec, image: str) -> dict[str, Any]:
        from fleet.faults import schedule_epoch, shared_control, shared_folder

        control = shared_control(self.state.root)
        retain = None
        if any(d.retain for d in spec.devices):  # the process backend's folder: down keeps it too
            from fleet.worker import retain_path

            retain = shared_folder(retain_path(self.state.root, "-").parent)
        return device_config(self.plan, spec, image, self.labels, self.healthcheck, control,
                             schedule_epoch(control) if self.plan.faults else None,
                             files={d.name: files_read(d) for d in spec.devices}, retain=retain)

    def _poller_config(self, image: str) -> dict[str, Any]:
        return poller_config(self.plan, self.networks, self.state.root, image, self.labels)

    def _create(self, config: dict[str, Any]) -> str:
        """Create one container (attached to its networks, not started); return its id.  No
        endpoint exists until it starts, so creating needs no network lock."""
        config = dict(config)
        endpoints = config.pop("endpoints")
        config["labels"] = {**config["labels"], f"{LABEL}.digest": _digest(config, endpoints)}
        host = self.api.create_host_config(**config.pop("host_config"))
        (first, address), *rest = endpoints
        networking = self.api.create_networking_config({first: self.api.create_endpoint_config(
            ipv4_address=address)})
        created = self.api.create_container(host_config=host, networking_config=networking, **config)
        for network, address in rest:
            self.api.connect_container_to_network(created["Id"], network, ipv4_address=address)
        return created["Id"]

    def _start(self, item: tuple[str, str, Sequence[str]]) -> None:
        """Start a created container, (program, id, its networks), holding its networks' locks."""
        import docker.errors

        program, container, networks = item
        try:
            with self.attaching(networks):
                self.api.start(container)
        except docker.errors.APIError as exc:
            raise BackendError(f"{program}: {exc.explanation or exc}") from None

    def _remove(self, container: dict) -> None:
        """Remove a listed container (killing it), whatever its state."""
        import docker.errors

        with self.attaching(_networks_of(container)), contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(container["Id"], force=True, v=True)

    def _converge(self, configs: dict[str, dict[str, Any]], progress: Progress,
                  before: Plan | None = None) -> None:
        """Make the fleet's containers match ``configs`` (program -> create keywords); running
        workers replaced are noted as interrupting the devices they served in ``before``."""
        import docker.errors

        listed = self._listed()
        stale = [c for program, c in listed.items() if program not in configs]
        keep: set[str] = set()
        for program, config in configs.items():
            found = listed.get(program)
            if found is None:
                continue
            trial = dict(config)
            endpoints = trial.pop("endpoints")
            if found["Labels"].get(f"{LABEL}.digest") == _digest(trial, endpoints):
                keep.add(program)
            else:
                stale.append(found)
        self.interrupts(before, {p for p, c in listed.items() if c in stale and c.get("State") == "running"})
        parallel(by_network(stale, _networks_of), self._remove, progress, "removing stale containers")

        def create(program: str) -> tuple[str, str, Sequence[str]]:
            try:
                return program, self._create(configs[program]), [n for n, _ in configs[program]["endpoints"]]
            except docker.errors.APIError as exc:
                raise BackendError(f"{program}: {exc.explanation or exc}") from None

        fresh = parallel([p for p in configs if p not in keep], create, progress, "creating containers")
        stopped = [(p, listed[p]["Id"], [n for n, _ in configs[p]["endpoints"]]) for p in sorted(keep)
                   if listed[p]["State"] not in ("running", "restarting")]
        parallel(by_network(fresh + stopped, lambda item: item[2]), self._start, progress,
                 "starting containers")

    def up(self, only: Sequence[str] | None = None, progress: Progress = no_progress) -> Plan:
        listed = self._listed()
        applied, selection = self.applied_for(only, bool(listed))
        progress(0, 1, "device image")
        image = self.image()
        self.state.make()
        before = self.applied_plan()
        self.write_applied(applied)
        if not listed:
            self.forget_starts()
        self.notices = self._neighbour_room()
        progress(0, len(self.networks), "networks")
        self._ensure_networks()
        wanted = {c.worker: self._device_config(c, image) for c in self.containers
                  if c.worker in {w.name for w in applied.workers}}
        wanted[HEALTH_PROGRAM] = self._poller_config(image)
        self._converge(wanted, progress, before)
        self.write_selection(selection)
        self.wait_running(wanted, progress)
        return applied

    def program_states(self, names: set[str]) -> dict[str, ProcessState]:
        return {p: _STATES.get(c.get("State", ""), ProcessState.UNKNOWN)
                for p, c in self._listed().items() if p in names}

    # -- down -------------------------------------------------------------------------------
    def down(self, progress: Progress = no_progress) -> None:
        # everything with the fleet's label, whatever the plan says now (leftovers included)
        listed = self.api.containers(all=True, filters=self._filters())
        parallel(by_network(listed, _networks_of), self._remove, progress, "removing containers")
        names = {n.lstrip("/") for c in listed for n in c["Names"]} | {c.name for c in self.containers}
        names = sorted(names | {f"{self.plan.fleet.name}-{HEALTH_PROGRAM}"})
        parallel(self.api.networks(filters=self._filters()), lambda net: self._remove_network(net, names),
                 progress, "removing networks")
        with contextlib.suppress(FileNotFoundError):
            self.state.selection.unlink()
        from fleet.faults import reset

        reset(self.state.root)

    def _remove_network(self, net: dict, names: list[str]) -> None:
        import docker.errors

        error = ""
        for attempt in range(20):  # a container being removed may still hold an endpoint
            try:
                self.api.remove_network(net["Id"])
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                error = exc.explanation or str(exc)
            if attempt == 10:  # docker 20.10 can keep a stale endpoint (moby#17217): force it out
                for name in names:
                    with contextlib.suppress(docker.errors.APIError):
                        self.api.disconnect_container_from_network(name, net["Id"], force=True)
            time.sleep(0.25)
        raise BackendError(f"cannot remove network {net['Name']}: {error} (if no container is left, "
                           "dockerd keeps a stale endpoint, moby#17217; restarting dockerd clears it)")

    # -- status, logs, restart --------------------------------------------------------------
    def status(self) -> dict[str, ProgramStatus]:
        listed = self._listed()
        if not listed:
            return {}
        inspected = parallel(listed.values(), lambda c: self.api.inspect_container(c["Id"]), no_progress, "")
        out = {}
        for program, info in zip(listed, inspected, strict=True):
            state = info["State"]
            running = state.get("Running") and not state.get("Restarting")
            process = _STATES.get(state.get("Status", ""), ProcessState.UNKNOWN)
            health = (state.get("Health") or {}).get("Status", "none")
            out[program] = ProgramStatus(
                name=program, state=process, pid=state.get("Pid") or None,
                started=_epoch(state.get("StartedAt", "")) if running else None,
                detail=f"container {info['Id'][:12]} {state.get('Status')}, health {health}, "
                       f"restarts {info.get('RestartCount', 0)}")
        self._record_restarts(out, {p: i.get("RestartCount", 0)
                                    for p, i in zip(listed, inspected, strict=True)})
        return out

    def _record_restarts(self, programs: dict[str, ProgramStatus], restarts: dict[str, int]) -> None:
        """Keep the store's starts in step with Docker's restart counts (``status`` reads them)."""
        if not self.state.root.exists():
            return
        # a damaged database only costs the restart counts; the poller starts a new one
        with contextlib.suppress(StoreError), Store(self.state.database) as store:
            starts = store.starts()
            for program, count in restarts.items():
                for _ in range(count + 1 - len(starts.get(program, []))):
                    store.record_start(program, programs[program].pid or 0)

    def logs(self, program: str, lines: int = 50) -> str:
        found = self._listed().get(program)
        if found is None:
            return ""
        text = self.api.logs(found["Id"], stdout=True, stderr=True, tail=lines).decode(errors="replace")
        return text if not text or text.endswith("\n") else text + "\n"

    def restart(self, programs: Sequence[str], progress: Progress = no_progress) -> None:
        listed = self._listed()
        if not listed:
            raise BackendError("the fleet is not up (run `cpppo-fleet up` first)")
        missing = [p for p in programs if p not in listed]
        if missing:
            raise BackendError(f"{missing[0]}: no such container in fleet {self.plan.fleet.name!r}")
        def restart(program: str) -> None:
            with self.attaching(_networks_of(listed[program])):
                self.api.restart(listed[program]["Id"], timeout=5)

        parallel(by_network(programs, lambda p: _networks_of(listed[p])), restart, progress, "restarting")
        self.wait_running(programs, progress)
