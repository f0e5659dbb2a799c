"""Docker fleet speed and memory: the docker backend against a plain sequential
``containers.run`` loop of one upstream-cpppo container per device, in the same run.

    python benchmarks/docker_scale.py                       # N = 30 (a few minutes)
    python benchmarks/docker_scale.py --n 100
    python benchmarks/docker_scale.py --n 300 --per-container 1

Both sides run N EtherNet/IP devices (upstream's Modbus simulator needs pymodbus 1.x), each
at its own address on a bridge network, and are "healthy" when every device answers our
health poll (List Identity + a tag read) from the host.  Measured: time from start to all
healthy, memory per container (the container's cgroup: usage less inactive page cache, as
`docker stats` shows it), and time to remove everything.  Ours is `DockerBackend.up`/`down`
(parallel API calls, the health-poller container included); the peer is the loop people
write: `containers.run(upstream image)` per device, then `remove(force=True)` per container.
Images are built first (cached): ours from the project's wheelhouse, the peer's from
upstream cpppo 5.2.5 wheels made on the host.  Everything created is labelled
``cpppo-fleet.bench=<id>`` and removed by id at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from fleet.backends.docker.backend import DockerBackend  # noqa: E402
from fleet.backends.docker.image import build_device_image, build_upstream_image  # noqa: E402
from fleet.config import parse  # noqa: E402
from fleet.health import run_sweep  # noqa: E402
from fleet.kinds import EnipOptions  # noqa: E402
from fleet.plan import PlannedDevice, expand  # noqa: E402

BENCH_LABEL = "cpppo-fleet.bench"
CGROUP = Path("/sys/fs/cgroup/memory/docker")  # cgroup v1 with the cgroupfs driver


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


def wait_healthy(devices: list[PlannedDevice], timeout: float) -> float | None:
    """Seconds until every device answered once (polling the rest), or None after ``timeout``."""
    begun = time.monotonic()
    pending = list(devices)
    while pending:
        results = run_sweep(pending, 2.0, 200)
        answered = {r.device for r in results if r.ok}
        pending = [d for d in pending if d.name not in answered]
        if pending and time.monotonic() - begun > timeout:
            return None
        if pending:
            time.sleep(0.2)
    return time.monotonic() - begun


def ours(client, n: int, per_container: int, image: str, bench_id: str,
         timeout: float) -> dict[str, float | None]:
    subnet = free_subnet(client, "172.27.0.0/16", 22)
    plan = expand(parse(f"""
[fleet]
name = "bench{bench_id}"
backend = "docker"
address_pool = "{subnet}"
devices_per_container = {per_container}
docker_image = "{image}"
health_interval = 5.0
[[device]]
kind = "enip"
count = {n}
name = "plc{{n:04}}"
tags = ["SCADA=INT[1000]"]
"""))
    with tempfile.TemporaryDirectory() as state:
        backend = DockerBackend(plan, Path(state) / "fleet", labels={BENCH_LABEL: bench_id})
        try:
            begun = time.monotonic()
            applied = backend.up()
            started = time.monotonic() - begun
            healthy = wait_healthy(list(applied.devices), timeout)
            up = None if healthy is None else started + healthy
            listed = backend.api.containers(filters={"label": f"{BENCH_LABEL}={bench_id}"})
            ids = [c["Id"] for c in listed if "cpppo-fleet.worker" in c["Labels"]]
            memory = [container_memory(client, i) for i in ids]
            poller = sum(container_memory(client, c["Id"]) for c in listed if c["Id"] not in ids)
            begun = time.monotonic()
            backend.down()
            down = time.monotonic() - begun
        finally:
            backend.close()
    return {"containers": len(ids), "up": up, "started": started, "memory": sum(memory) / len(memory),
            "total": float(sum(memory) + poller), "down": down}


def peer(client, n: int, image: str, bench_id: str, timeout: float) -> dict[str, float | None]:
    subnet = free_subnet(client, "172.26.0.0/16", 22)
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
    begun = time.monotonic()
    for container in containers:
        container.remove(force=True)
    network.remove()
    down = time.monotonic() - begun
    return {"containers": n, "up": up, "started": started, "memory": sum(memory) / len(memory),
            "total": float(sum(memory)), "down": down}


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
    parser.add_argument("--n", type=int, default=30, help="devices (default 30; try 100, 300)")
    parser.add_argument("--per-container", type=int, default=1, help="our devices per container")
    parser.add_argument("--no-peer", action="store_true", help="measure only ours")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for all healthy")
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=300)
    print("building images (cached when nothing changed) ...", flush=True)
    image = build_device_image(client)
    upstream = None if args.no_peer else build_upstream_image(client)
    bench_id = uuid.uuid4().hex[:8]
    try:
        print(f"ours: {args.n} devices, {args.per_container} per container ...", flush=True)
        a = ours(client, args.n, args.per_container, image, bench_id, args.timeout)
        b = None
        if upstream:
            print(f"peer: {args.n} upstream cpppo containers, sequential containers.run ...", flush=True)
            b = peer(client, args.n, upstream, bench_id, args.timeout)
    finally:
        cleanup(client, bench_id)
        client.close()
    mib = 2**20
    rows = [("containers", "containers", 1.0, ""), ("up -> all healthy", "up", 1.0, " s"),
            ("  of which create+start", "started", 1.0, " s"),
            ("memory / container", "memory", mib, " MiB"),
            ("memory, all (+ poller)", "total", mib, " MiB"),
            ("down", "down", 1.0, " s")]
    print(f"\nN = {args.n} ENIP devices\n{'':24} {'ours':>12} {'upstream loop':>14} {'peer/ours':>10}")
    for title, key, scale, unit in rows:
        ratio = ""
        if b and a[key] and b[key]:
            ratio = f"{b[key] / a[key]:.2f}x"
        print(f"{title:24} {_fmt(a[key], scale, unit):>12} {_fmt(b[key], scale, unit) if b else '-':>14} "
              f"{ratio:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
