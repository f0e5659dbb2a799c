"""Alias addressing (root): device addresses added to an interface, polled from another
network namespace over a veth pair this test creates and removes (by name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet.addresses import present
from fleet.backends.process import ProcessBackend
from fleet.cli import app
from fleet.config import load
from fleet.plan import expand

pytestmark = [pytest.mark.root, pytest.mark.slow]

SUBNET = f"10.213.{os.getpid() % 200 + 20}"  # a private /24 for the veth link


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def namespace(need_root: None) -> Iterator[tuple[str, str]]:
    """(namespace, host-side interface): a veth pair, one end in a fresh namespace."""
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"cpppofleet{tag}", f"cfa{tag}", f"cfb{tag}"
    try:
        ip("netns", "add", ns)
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("address", "add", f"{SUBNET}.254/24", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "address", "add", f"{SUBNET}.253/24", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, host_if
    finally:
        ip("link", "del", host_if, check=False)  # removes its peer too
        ip("netns", "del", ns, check=False)


def test_alias_addresses_reachable_from_another_namespace(namespace: tuple[str, str], tmp_path: Path) -> None:
    ns, host_if = namespace
    path, state = tmp_path / "fleet.toml", tmp_path / "state"
    path.write_text(f"""
[fleet]
name = "alias"
addressing = "alias"
interface = "{host_if}"
address_pool = "{SUBNET}.1-{SUBNET}.6"
health_interval = 1.0
devices_per_worker = 3

[[device]]
kind = "modbus"
count = 6
name = "pump{{n}}"
port = 1502
registers = ["40001-40010=7"]
""")
    plan = expand(load(path))
    hosts = {d.host for d in plan.devices}
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["up", str(path), "--state-dir", str(state)])
        assert result.exit_code == 0, result.output
        assert hosts <= present(host_if)
        poll = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "fleet.health", "--once",
                               str(state)], capture_output=True, text=True, timeout=60)
        results = [json.loads(line) for line in poll.stdout.splitlines()]
        assert poll.returncode == 0, poll.stdout + poll.stderr
        assert sorted(r["device"] for r in results if r["ok"]) == sorted(d.name for d in plan.devices)
        result = runner.invoke(app, ["down", str(path), "--state-dir", str(state)])
        assert result.exit_code == 0, result.output
        assert not hosts & present(host_if)
    finally:
        ProcessBackend(plan, state).down()
