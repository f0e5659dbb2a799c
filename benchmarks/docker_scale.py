"""Docker fleet speed and memory: the docker backend (its default layout of small bridges
started in parallel), the same backend on the old layout (one /22 bridge whose containers
start one at a time, ``--old``), and a plain sequential ``containers.run`` loop of one
upstream-cpppo container per device, in the same run.

    python benchmarks/docker_scale.py                       # N = 30 (a few minutes)
    python benchmarks/docker_scale.py --n 300 --old         # new layout, old layout, upstream loop
    python benchmarks/docker_scale.py --n 1000 --no-peer    # new layout only
    python benchmarks/docker_scale.py --n 300 --no-peer --floor   # and Docker's own floor
    python benchmarks/docker_scale.py --n 1000 --no-peer --floor-only   # Docker's floor alone

Both sides run N EtherNet/IP devices (upstream's Modbus simulator needs pymodbus 1.x), each
at its own address on a bridge network, and are "healthy" when every device answers our
health poll (List Identity + a tag read) from the host.  Measured: time from start to all
healthy, memory per container (the container's cgroup: usage less inactive page cache, as
`docker stats` shows it, and its RSS), time to remove everything, and what is left after
``down`` of the containers and networks the fleet made, looked up by the ids recorded after
``up`` (dockerd 20.10's moby#17217 would leave a network "with active endpoints").  Ours is
`DockerBackend.up`/`down` (parallel API calls, the health-poller container included); the peer
is the loop people write: `containers.run(upstream image)` per device, then `remove(force=True)`
per container.  ``--floor`` adds a column of the same backend and layout whose containers run
``sleep infinity`` instead of a worker (the device image with its entry point replaced): what
dockerd, containerd and runc alone take to create, start and remove that many containers here.
Images are built first (cached): ours from the project's wheelhouse, the peer's from
upstream cpppo 5.2.5 wheels made on the host.  Everything created is labelled
``cpppo-fleet.bench=<id>`` and removed by id at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import math
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

# DOCKER_SCALE_TREE: another source tree to measure (a copy of main: `git archive`), its image built
# from it (with CPPPO_FLEET_CACHE set to keep its wheelhouse out of that tree)
ROOT = Path(os.environ.get("DOCKER_SCALE_TREE") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from fleet.backends.base import BackendError  # noqa: E402
from fleet.backends.docker.backend import DockerBackend  # noqa: E402
from fleet.backends.docker.image import build_device_image, build_upstream_image  # noqa: E402
from fleet.config import parse  # noqa: E402
from fleet.kinds import EnipOptions  # noqa: E402
from fleet.plan import PlannedDevice, expand  # noqa: E402
from fleet.poller import run_sweep  # noqa: E402

BENCH_LABEL = "cpppo-fleet.bench"
CGROUP = Path("/sys/fs/cgroup/memory/docker")  # cgroup v1 with the cgroupfs driver
CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker")


def free_subnet(client, within: str, prefix: int) -> ipaddress.IPv4Network:
    taken = [ipaddress.IPv4Network(c["Subnet"]) for n in client.api.networks()
             for c in (n.get("IPAM") or {}).get("Config") or [] if c.get("Subnet", "").count(".") == 3]
    candidates = list(ipaddress.IPv4Network(within).subnets(new_prefix=prefix))
    random.shuffle(candidates)
    return next(net for net in candidates if not any(net.overlaps(t) for t in taken))


def container_memory(client, container_id: str) -> float:
    """Bytes charged to the container: usage less inactive file cache (as `docker stats`)."""
    base = CGROUP / container_id
    try:
        usage = int((base / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
        return usage - int(stat.get("total_inactive_file", 0))
    except OSError:
        stats = client.api.stats(container_id, stream=False)["memory_stats"]
        return stats.get("usage", 0) - stats.get("stats", {}).get("total_inactive_file", 0)


def _proc_status(pid: int | str) -> dict[str, int]:
    """VmRSS and Pss (bytes) of a process from /proc (0 where unreadable)."""
    out = {"rss": 0, "pss": 0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1]) * 1024
    return out


def _cpu(pid: int | str) -> float:
    """User + system CPU seconds of a process (its own, not its children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pids(name: str) -> list[int]:
    """Processes whose command is ``name``."""
    out = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name:
                out.append(int(entry.name))
    return out


def daemons() -> dict[str, float]:
    """dockerd's and containerd's RSS (bytes) and CPU seconds now."""
    out: dict[str, float] = {}
    for name in ("dockerd", "containerd"):
        pids = _pids(name)
        out[f"{name}_rss"] = float(sum(_proc_status(p)["rss"] for p in pids))
        out[f"{name}_cpu"] = sum(_cpu(p) for p in pids)
    return out


def shims(ids: list[str]) -> dict[str, float]:
    """The containerd shims of these containers: mean Pss and RSS (bytes), total CPU seconds."""
    wanted, found = set(ids), []
    for pid in _pids("containerd-shim"):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-id" in argv and argv[argv.index(b"-id") + 1].decode() in wanted:
                found.append(pid)
    stats = [_proc_status(p) for p in found]
    n = max(1, len(found))
    return {"shims": len(found), "shim_pss": sum(s["pss"] for s in stats) / n,
            "shim_rss": sum(s["rss"] for s in stats) / n, "shim_cpu": sum(_cpu(p) for p in found)}


def container_cpu(container_id: str) -> float:
    """CPU seconds used by the container's processes so far (cgroup v1 cpuacct)."""
    with contextlib.suppress(OSError, ValueError):
        return int((CPUACCT / container_id / "cpuacct.usage").read_text()) / 1e9
    return 0.0


def wait_healthy(devices: list[PlannedDevice], timeout: float) -> float | None:
    """Seconds until every device answered once (polling the rest), or None after ``timeout``
    (saying how many never answered, and the first of them with its last error)."""
    begun = time.monotonic()
    pending = list(devices)
    while pending:
        results = run_sweep(pending, 2.0, 200)
        answered = {r.device for r in results if r.ok}
        pending = [d for d in pending if d.name not in answered]
        if pending and time.monotonic() - begun > timeout:
            error = next((r.error for r in results if r.device == pending[0].name), "")
            print(f"{len(pending)} devices never answered; first: {pending[0].name} "
                  f"({pending[0].host}): {error}", flush=True)
            return None
        if pending:
            time.sleep(0.2)
    return time.monotonic() - begun


def container_rss(client, container_id: str) -> float:
    """Resident memory of the container's processes (the cgroup's total_rss)."""
    try:
        stat = dict(line.split() for line in (CGROUP / container_id / "memory.stat").read_text().splitlines())
        return float(stat["total_rss"])
    except (OSError, KeyError):
        stats = client.api.stats(container_id, stream=False)["memory_stats"]
        return float(stats.get("stats", {}).get("rss", 0))


def left_over(client, containers: list[str], networks: list[str]) -> int:
    """How many of these containers and networks (by id) still exist."""
    left = 0
    for inspect, ids in ((client.api.inspect_container, containers), (client.api.inspect_network, networks)):
        for i in ids:
            try:
                inspect(i)
                left += 1
            except docker.errors.NotFound:
                pass
    return left


def floor_image(client, image: str) -> str:
    """The device image with ``sleep infinity`` for its entry point (built from it, cached)."""
    dockerfile = f'FROM {image}\nENTRYPOINT ["sleep", "infinity"]\n'.encode()
    built, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag="cpppo-fleet/device-floor:latest",
                                   labels={BENCH_LABEL: "floor"}, rm=True)
    return built.id


def ours(client, n: int, per_container: int, image: str, bench_id: str, timeout: float,
         bridge_prefix: int | None = None, floor: bool = False) -> dict[str, float | None]:
    # the pool: a /27 bridge for each 28 devices by default (a /22 for 1,019 in the old layout);
    # 1,000 devices take 36 /27s, more than a /22 holds
    per_bridge, block = (28, 32) if bridge_prefix is None else (1019, 1024)
    needed = math.ceil(n / per_bridge) * block
    subnet = free_subnet(client, "172.27.0.0/16" if bridge_prefix is None else "172.26.0.0/16",
                         min(22, 32 - (needed - 1).bit_length()))
    bridges = "" if bridge_prefix is None else f"docker_bridge_prefix = {bridge_prefix}"
    plan = expand(parse(f"""
[fleet]
name = "bench{bench_id}"
backend = "docker"
address_pool = "{subnet}"
devices_per_container = {per_container}
docker_image = "{image}"
health_interval = 5.0
{bridges}
[[device]]
kind = "enip"
count = {n}
name = "plc{{n:04}}"
tags = ["SCADA=INT[1000]"]
"""))
    with tempfile.TemporaryDirectory() as state:
        backend = DockerBackend(plan, Path(state) / "fleet", labels={BENCH_LABEL: bench_id})
        try:
            before = daemons()
            begun = time.monotonic()
            applied = backend.up()
            started = time.monotonic() - begun
            for line in backend.notices:
                print(line, flush=True)
            up = None  # the floor's containers answer nothing: running is all there is (no "up" row)
            if not floor:
                healthy = wait_healthy(list(applied.devices), timeout)
                up = None if healthy is None else started + healthy
            mine = {"label": f"cpppo-fleet.fleet={plan.fleet.name}"}
            listed = backend.api.containers(all=True, filters=mine)
            nets = [net["Id"] for net in backend.api.networks(filters=mine)]
            ids = [c["Id"] for c in listed if "cpppo-fleet.worker" in c["Labels"]]
            memory = [container_memory(client, i) for i in ids]
            rss = [container_rss(client, i) for i in ids]
            cpu = [container_cpu(i) for i in ids]
            after, shim = daemons(), shims(ids)
            daemons_share = sum(after[f"{d}_rss"] - before[f"{d}_rss"]
                                for d in ("dockerd", "containerd")) / len(ids)
            poller = sum(container_memory(client, c["Id"]) for c in listed if c["Id"] not in ids)
            begun = time.monotonic()
            try:
                backend.down()
            except BackendError as exc:  # moby#17217 would show here: "... has active endpoints"
                print(f"down failed: {exc}", flush=True)
            down = time.monotonic() - begun
            left = left_over(client, [c["Id"] for c in listed], nets)
        finally:
            backend.close()
    return {"containers": len(ids), "networks": len(nets), **({} if floor else {"up": up}),
            "started": started, "memory": sum(memory) / len(memory), "rss": sum(rss) / len(rss),
            "shim": shim["shim_pss"], "shim_rss": shim["shim_rss"],
            "dockerd": daemons_share,
            "per_container": sum(memory) / len(memory) + shim["shim_pss"] + daemons_share,
            "cpu_worker": sum(cpu) / len(cpu), "cpu_shim": shim["shim_cpu"] / len(ids),
            "cpu_dockerd": (after["dockerd_cpu"] - before["dockerd_cpu"]) / len(ids),
            "cpu_containerd": (after["containerd_cpu"] - before["containerd_cpu"]) / len(ids),
            "total": float(sum(memory) + poller), "down": down, "left": left}


def peer(client, n: int, image: str, bench_id: str, timeout: float) -> dict[str, float | None]:
    subnet = free_subnet(client, "172.25.0.0/16", 22)
    labels = {BENCH_LABEL: bench_id}
    network = client.networks.create(f"bench{bench_id}-peer", driver="bridge", labels=labels,
                                     ipam=docker.types.IPAMConfig(pool_configs=[
                                         docker.types.IPAMPool(subnet=str(subnet))]))
    containers = []
    begun = time.monotonic()
    for i in range(n):
        containers.append(client.containers.run(image, name=f"bench{bench_id}-peer{i:04}", detach=True,
                                                network=network.name, labels=labels,
                                                restart_policy={"Name": "unless-stopped"}))
    devices = []
    for i, container in enumerate(containers):
        container.reload()
        host = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        devices.append(PlannedDevice(f"peer{i:04}", "enip", host, 44818, "", 0, i, (),
                                     EnipOptions(tags=("SCADA=INT[1000]",), health_tag="SCADA[0]")))
    started = time.monotonic() - begun
    healthy = wait_healthy(devices, timeout)
    up = None if healthy is None else started + healthy
    memory = [container_memory(client, c.id) for c in containers]
    rss = [container_rss(client, c.id) for c in containers]
    begun = time.monotonic()
    for container in containers:
        container.remove(force=True)
    network.remove()
    down = time.monotonic() - begun
    left = left_over(client, [c.id for c in containers], [network.id])
    return {"containers": n, "networks": 1, "up": up, "started": started, "memory": sum(memory) / len(memory),
            "rss": sum(rss) / len(rss), "total": float(sum(memory)), "down": down, "left": left}


def cleanup(client, bench_id: str) -> None:
    """Remove, by id, whatever this run created and still exists (after an error)."""
    label = {"label": [f"{BENCH_LABEL}={bench_id}"]}
    for c in client.api.containers(all=True, filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(c["Id"], force=True)
    for net in client.api.networks(filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_network(net["Id"])


def _fmt(value: float | None, scale: float = 1.0, unit: str = "") -> str:
    if isinstance(value, int):
        return str(value)
    return "timeout" if value is None else f"{value / scale:.1f}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="devices (default 30; try 100, 300, 1000)")
    parser.add_argument("--per-container", type=int, default=1, help="our devices per container")
    parser.add_argument("--old", action="store_true", help="also ours on the old layout: one /22 bridge, "
                                                           "its containers started one at a time")
    parser.add_argument("--no-peer", action="store_true", help="no upstream containers.run loop")
    parser.add_argument("--floor", action="store_true", help="also our layout with `sleep infinity` "
                                                            "containers: Docker's own cost")
    parser.add_argument("--floor-only", action="store_true", help="only the floor column (Docker's own "
                                                                 "cost at N, without a worker's memory)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all healthy")
    parser.add_argument("--prefix", type=int, default=None, help="our docker_bridge_prefix (default: the "
                                                                 "fleet's own, /27)")
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=300)
    print("building images (cached when nothing changed) ...", flush=True)
    image = build_device_image(client)
    upstream = None if args.no_peer or args.floor_only else build_upstream_image(client)
    bench_id = uuid.uuid4().hex[:8]
    columns: list[tuple[str, dict[str, float | None]]] = []
    try:
        import fleet

        if not args.floor_only:
            print(f"ours ({Path(fleet.__file__).parent.parent}): {args.n} devices, {args.per_container} "
                  f"per container, bridges /{args.prefix or 'default'} ...", flush=True)
            columns.append(("ours", ours(client, args.n, args.per_container, image, bench_id, args.timeout,
                                         bridge_prefix=args.prefix)))
        if args.old and not args.floor_only:
            print(f"ours, old layout: {args.n} devices on one /22 bridge, started one at a time ...",
                  flush=True)
            columns.append(("old layout", ours(client, args.n, args.per_container, image, bench_id,
                                               args.timeout, bridge_prefix=22)))
        if args.floor or args.floor_only:
            print(f"floor: {args.n} `sleep infinity` containers on our layout ...", flush=True)
            columns.append(("docker floor", ours(client, args.n, args.per_container,
                                                 floor_image(client, image), bench_id, args.timeout,
                                                 bridge_prefix=args.prefix, floor=True)))
        if upstream:
            print(f"peer: {args.n} upstream cpppo containers, sequential containers.run ...", flush=True)
            columns.append(("upstream loop", peer(client, args.n, upstream, bench_id, args.timeout)))
    finally:
        cleanup(client, bench_id)
        client.close()
    mib = 2**20
    rows = [("containers", "containers", 1.0, ""), ("networks", "networks", 1.0, ""),
            ("up -> all healthy", "up", 1.0, " s"), ("  of which create+start", "started", 1.0, " s"),
            ("memory / container", "memory", mib, " MiB"), ("  of which RSS", "rss", mib, " MiB"),
            ("shim / container (Pss)", "shim", mib, " MiB"), ("  shim RSS", "shim_rss", mib, " MiB"),
            ("dockerd+containerd / c.", "dockerd", mib, " MiB"),
            ("all / container", "per_container", mib, " MiB"),
            ("CPU / c.: container", "cpu_worker", 1e-3, " ms"), ("  shim", "cpu_shim", 1e-3, " ms"),
            ("  dockerd", "cpu_dockerd", 1e-3, " ms"), ("  containerd", "cpu_containerd", 1e-3, " ms"),
            ("memory, all (+ poller)", "total", mib, " MiB"), ("down", "down", 1.0, " s"),
            ("left after down (by id)", "left", 1.0, "")]
    a = columns[0][1]
    ratios = [f"{name}/ours" for name, _ in columns[1:]]
    print(f"\nN = {args.n} ENIP devices\n{'':24}" + "".join(f" {name:>14}" for name, _ in columns)
          + "".join(f" {r:>18}" for r in ratios))
    for title, key, scale, unit in rows:
        line = f"{title:24}" + "".join(f" {_fmt(c[key], scale, unit) if key in c else '-':>14}"
                                       for _, c in columns)
        for _, b in columns[1:]:
            timed = key in ("up", "started", "down", "per_container") and a.get(key) and b.get(key)
            ratio = f"{b[key] / a[key]:.2f}x" if timed else ""
            line += f" {ratio:>18}"
        print(line)
    return 0 if all(c["left"] == 0 for _, c in columns) else 1


if __name__ == "__main__":
    sys.exit(main())
