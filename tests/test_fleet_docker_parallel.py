"""The docker backend's parallel start and removal against a recording stand-in for the docker
API (no engine): containers of different networks start and are removed at the same time, but
never two of one network at once (dockerd 20.10's endpoint count, moby#17217)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fleet.backends.docker.backend import DockerBackend, by_network
from fleet.config import parse
from fleet.plan import expand

NETWORKS = 3


class RecordingApi:
    """Enough of docker's APIClient for ``_converge`` and ``down``; ``start`` and
    ``remove_container`` meet at a barrier of NETWORKS parties (they must run at once, one per
    network) and count what is in flight on each network."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: dict[str, list[str]] = {}  # id -> networks
        self.in_flight: dict[str, int] = {}
        self.most_on_one_network = 0
        self.started: list[str] = []
        self.removed: list[str] = []
        self.barrier = threading.Barrier(NETWORKS, timeout=30)

    # creating: plain records
    def create_host_config(self, **kw):
        return kw

    def create_endpoint_config(self, **kw):
        return kw

    def create_networking_config(self, endpoints):
        return {"EndpointsConfig": endpoints}

    def create_container(self, host_config, networking_config, name, **kw):
        with self.lock:
            self.created[name] = list(networking_config["EndpointsConfig"])
        return {"Id": name}

    def connect_container_to_network(self, container, network, ipv4_address=None):
        with self.lock:
            self.created[container].append(network)

    def containers(self, all=False, filters=None):
        return [{"Id": cid, "Names": [f"/{cid}"], "Labels": {"cpppo-fleet.worker": cid},
                 "State": "running", "NetworkSettings": {"Networks": {n: {} for n in nets}}}
                for cid, nets in self.created.items()]

    def networks(self, filters=None):
        return []

    # joining and leaving: at once across networks, one at a time on each
    def _attach(self, container: str, done: list[str]) -> None:
        nets = self.created[container]
        with self.lock:
            for n in nets:
                self.in_flight[n] = self.in_flight.get(n, 0) + 1
                self.most_on_one_network = max(self.most_on_one_network, self.in_flight[n])
        try:
            if len(nets) == 1 and len(done) < NETWORKS:
                self.barrier.wait()  # BrokenBarrierError unless NETWORKS of them run together
        finally:
            with self.lock:
                for n in nets:
                    self.in_flight[n] -= 1
                done.append(container)

    def start(self, container):
        self._attach(container, self.started)

    def remove_container(self, container, force=False, v=False):
        self._attach(container, self.removed)
        with self.lock:
            del self.created[container]


class FakeClient:
    def __init__(self) -> None:
        self.api = RecordingApi()

    def close(self) -> None:
        pass


def test_by_network_takes_one_container_of_each_network_in_turn() -> None:
    items = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1), ("c", 2)]
    assert by_network(items, lambda item: [item[0]]) == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2),
                                                          ("a", 3)]


@pytest.mark.parametrize("threads", [4, 16])
def test_containers_start_and_go_in_parallel_across_networks_one_at_a_time_on_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    import fleet.backends.docker.backend as backend_module

    monkeypatch.setattr(backend_module, "PARALLEL", threads)
    plan = expand(parse('''
[fleet]
name = "lab"
backend = "docker"
address_pool = ["172.30.0.1-172.30.0.4", "172.30.0.17-172.30.0.20", "172.30.0.33-172.30.0.36"]
docker_bridge_prefix = 28
[[device]]
kind = "modbus"
count = 12
name = "pump{n}"
registers = ["40001-40010=7"]
'''))
    client = FakeClient()
    backend = DockerBackend(plan, tmp_path / "lab", client=client, healthcheck=30.0)
    assert [n.subnet for n in backend.networks] == ["172.30.0.0/28", "172.30.0.16/28", "172.30.0.32/28"]
    configs = {c.worker: {"name": c.name, "labels": {}, "host_config": {}, "endpoints": c.endpoints}
               for c in backend.containers}
    configs["health"] = {"name": "lab-health", "labels": {}, "host_config": {},
                         "endpoints": tuple((n.name, n.poller) for n in backend.networks)}
    seen: list[tuple[str, int, int]] = []
    backend._converge(configs, lambda done, total, what: seen.append((what, done, total)))
    api = client.api
    assert sorted(api.started) == sorted([c.name for c in backend.containers] + ["lab-health"])
    assert api.started[0] == "lab-health"  # on every network: first, alone
    assert api.created["lab-health"] == ["lab-net0", "lab-net1", "lab-net2"]
    assert api.most_on_one_network == 1
    assert ("creating containers", 13, 13) in seen and ("starting containers", 13, 13) in seen

    api.barrier.reset()
    backend.down(lambda done, total, what: seen.append((what, done, total)))
    assert api.created == {} and len(api.removed) == 13
    assert api.most_on_one_network == 1
    assert ("removing containers", 13, 13) in seen
