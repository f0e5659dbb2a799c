"""Which parallel step on one Docker network leaves dockerd 20.10's endpoint count wrong
(moby#17217: "network ... has active endpoints" once every container is gone)?

    python benchmarks/docker_endpoint_race.py --base 20 create start remove all

Each mode makes one bridge network (10.213.<base+k>.0/24) and N `sleep` containers on it
(the endpoint given at create), then creates, starts and removes them, in parallel for the
step the mode names ("all": every step) and one at a time otherwise, then removes the network.
It prints whether the network could be removed.  Everything is labelled and removed by id at
the end; a network the bug hit cannot be removed until dockerd restarts (it is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import docker

IMAGE = "cpppo-fleet/base:bookworm"  # images/build-base.sh
LABELS = {"cpppo-fleet.bench": "endpoint-race"}
MODES = ("create", "start", "remove", "all")


def trial(api, mode: str, k: int, n: int, made: list[str], nets: list[str]) -> str:
    net = api.create_network(f"race-{mode}-{k}", driver="bridge", labels=LABELS, ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=f"10.213.{k}.0/24")]))["Id"]
    nets.append(net)

    def create(i: int) -> str:
        address = f"10.213.{k}.{i + 2}"
        endpoint = api.create_networking_config({net: api.create_endpoint_config(ipv4_address=address)})
        made.append(api.create_container(IMAGE, ["sleep", "600"], labels=LABELS, networking_config=endpoint,
                                         host_config=api.create_host_config(network_mode=net))["Id"])
        return made[-1]

    def each(work, items, parallel: bool) -> list:
        if parallel:
            with ThreadPoolExecutor(n) as pool:
                return list(pool.map(work, items))
        return [work(item) for item in items]

    times = []
    begun = time.monotonic()
    ids = each(create, range(n), mode in ("create", "all"))
    times.append(time.monotonic() - begun)
    each(api.start, ids, mode in ("start", "all"))
    times.append(time.monotonic() - sum(times) - begun)
    each(lambda i: api.remove_container(i, force=True), ids, mode in ("remove", "all"))
    times.append(time.monotonic() - sum(times) - begun)
    try:
        api.remove_network(net)
        nets.remove(net)
        outcome = "network removed"
    except docker.errors.APIError as exc:
        outcome = exc.explanation or str(exc)
    return (f"{mode:6} {n} containers: create {times[0]:.1f} s, start {times[1]:.1f} s, "
            f"remove {times[2]:.1f} s -> {outcome}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="+", choices=MODES)
    parser.add_argument("--base", type=int, default=20, help="first third octet of the 10.213.x.0/24 subnets")
    parser.add_argument("--n", type=int, default=30, help="containers per trial")
    args = parser.parse_args(argv)
    api = docker.from_env(timeout=300, max_pool_size=args.n + 4).api
    made: list[str] = []
    nets: list[str] = []
    bad = 0
    try:
        for k, mode in enumerate(args.modes, args.base):
            line = trial(api, mode, k, args.n, made, nets)
            bad += "active endpoints" in line
            print(line, flush=True)
    finally:
        for container in made:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container, force=True)
        for net in nets:
            try:
                api.remove_network(net)
            except docker.errors.APIError as exc:
                print(f"left network {net[:12]}: {exc.explanation or exc}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
