"""A server bound to all interfaces answers a UDP List Identity sent to a broadcast address.

Root only.  Everything happens inside a network namespace this test creates (and removes, by
its name): a veth pair with a private /24 on one end, our server bound to 0.0.0.0 on the
default port 44818, and clients that broadcast to that /24's broadcast address with
SO_BROADCAST.  No packet leaves the namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from cpppo.enip.codec import cpf, encapsulation
from cpppo.enip.codec.encapsulation import Command
from tests.support import python_module, running

pytestmark = pytest.mark.root

SUBNET = f"10.213.{230 + os.getpid() % 20}"  # a private /24 that exists only inside the namespace
ADDRESS, BROADCAST, PORT = f"{SUBNET}.1", f"{SUBNET}.255", 44818

#: runs inside the namespace: wait (bounded) until the server accepts TCP connections
WAIT = f"""
import socket, time
deadline = time.monotonic() + 15
while True:
    try:
        socket.create_connection(("{ADDRESS}", {PORT}), timeout=0.5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("no server on {ADDRESS}:{PORT}")
        time.sleep(0.05)
"""
#: then: broadcast one List Identity, print every reply as "<sender ip> <hex>" for 1.5 s
PROBE = WAIT + f"""
request = bytes.fromhex("6300 0000 00000000 00000000") + b"bcast-li" + bytes(4)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind(("{ADDRESS}", 0))
    sock.settimeout(0.5)
    sock.sendto(request, ("{BROADCAST}", {PORT}))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            data, peer = sock.recvfrom(65536)
        except socket.timeout:
            continue
        print(peer[0], data.hex(), flush=True)
"""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def namespace(need_root: None) -> Iterator[str]:
    """A fresh namespace with a veth pair; one end holds ``ADDRESS``/24, broadcast ``BROADCAST``."""
    name = f"cpppo-bcast-{uuid.uuid4().hex[:8]}"
    try:
        ip("netns", "add", name)
        ip("-n", name, "link", "add", "bc0", "type", "veth", "peer", "name", "bc1")
        ip("-n", name, "address", "add", f"{ADDRESS}/24", "broadcast", BROADCAST, "dev", "bc0")
        for link in ("lo", "bc0", "bc1"):
            ip("-n", name, "link", "set", link, "up")
        yield name
    finally:
        ip("netns", "del", name, check=False)  # its interfaces go with it


def in_namespace(name: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


def test_server_on_all_interfaces_answers_a_broadcast_list_identity(namespace: str) -> None:
    server = python_module("cpppo.server.enip", "--address", f"0.0.0.0:{PORT}", "SCADA=INT[10]")
    with running(in_namespace(namespace, server)):
        probe = subprocess.run(in_namespace(namespace, [sys.executable, "-I", "-c", PROBE]),
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        replies = [line.split() for line in probe.stdout.splitlines()]
        assert replies, "no reply to the broadcast List Identity"
        for sender, raw in replies:  # the broadcast may reach the server once per interface
            assert sender == ADDRESS
            consumed, header, payload = encapsulation.decode(bytes.fromhex(raw))
            assert consumed == len(raw) // 2
            assert (header.command, header.status, header.context) == (Command.LIST_IDENTITY, 0, b"bcast-li")
            (item,) = cpf.decode_items(payload)
            identity = cpf.IdentityItem.decode(item.data)
            assert identity.product_name == "1756-L61/B LOGIX5561"
            # bound to 0.0.0.0, the server names the address the asker reaches it at
            assert (identity.sin_addr, identity.sin_port) == (ADDRESS, PORT)


def test_enip_client_broadcast_list_identity(namespace: str) -> None:
    server = python_module("cpppo.server.enip", "--address", f"0.0.0.0:{PORT}", "SCADA=INT[10]")
    with running(in_namespace(namespace, server)):
        ready = subprocess.run(in_namespace(namespace, [sys.executable, "-I", "-c", WAIT]),
                               capture_output=True, text=True, timeout=60)
        assert ready.returncode == 0, ready.stderr
        client = python_module("cpppo.server.enip.client", "-i", "--udp", "--broadcast",
                               "-a", f"{BROADCAST}:{PORT}", "-t", "1.5")
        result = subprocess.run(in_namespace(namespace, client), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"from ('{ADDRESS}', {PORT})" in result.stdout
        assert "1756-L61/B LOGIX5561" in result.stdout and ADDRESS in result.stdout
