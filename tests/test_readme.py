"""The README's "Using it" commands are tests: each one is read from README.md and run for real.

Only addresses and ports are adapted, so that the test is hermetic: the example plant's
addresses in the README are resolved to device names through the real example ``fleet.toml``
(so the README must keep naming real devices of the example), and those names are looked up
in a small fleet of the same shape (ENIP lines and drives, Modbus pumps and meters) on a
loopback network of its own.  The single simulators get an ``-a host:port`` of their own.
The Docker line (``cpppo-fleet build && ... --backend docker``) is covered by the docker
tests, not here.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.backends.process import ProcessBackend
from fleet.config import load
from fleet.plan import Plan, expand
from tests.support import ROOT, free_port, running

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
OCTET = 20 + os.getpid() % 200  # a /24 of 127.88/16 per test run: parallel runs don't collide
NET = f"127.88.{OCTET}"

SMALL_FLEET = """
[fleet]
name = "readme"
address_pool = "{net}.0/28"
health_interval = 0.5
health_timeout = 1.0
devices_per_worker = 2

[[device]]
kind = "enip"
count = 2
name = "line{{n:03}}"
port = {enip}
tags = ["SCADA=INT[1000]", "Motor_Speed=REAL", "Recipe=SSTRING[32]", "Counts@22/1/1=DINT[16]"]
identity = {{ product_name = "1756-L61/B LOGIX5561", vendor_id = 1, product_type = 14, product_code = 54 }}
delay = [0.001, 0.005]

[[device]]
kind = "enip"
count = 1
name = "drive{{n:02}}"
port = {enip}
simple = true
tags = ["Motor_Velocity@0x93/3/10=REAL", "Output_Current@0x93/1/7=REAL"]

[[device]]
kind = "modbus"
count = 2
name = "pump{{n:02}}"
port = {modbus}
registers = ["40001-40100=0", "1-16=0", "10001-10016=1", "30001-30010=42"]

[[device]]
kind = "modbus"
count = 1
name = "meter{{n:02}}"
port = {modbus}
registers = ["30001-30100=230", "40001-40004=1"]
health_register = 30001
delay = 0.01
"""


# -- reading the README -----------------------------------------------------------------------

def readme_commands() -> list[list[str]]:
    """Every command (argv) of the sh blocks of README's "Using it" section, in order; a line
    ``a && b`` gives two commands."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Using it\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Using it' section"
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", match.group(1), re.S | re.M):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return commands


COMMANDS = readme_commands()


def subcommand(argv: list[str]) -> str | None:
    """The cpppo-fleet command of ``argv`` (after its global ``--backend X``), else None."""
    if argv[0] != "cpppo-fleet":
        return None
    words = argv[1:]
    while words and words[0].startswith("-"):
        words = words[2:]
    return words[0] if words else None


def on_docker(argv: list[str]) -> bool:
    """Whether a cpppo-fleet command runs on the docker backend (flag or the file's backend)."""
    if "--backend" in argv:
        return argv[argv.index("--backend") + 1] == "docker"
    files = [w for w in argv if w.endswith(".toml")]
    return bool(files) and load(ROOT / files[-1]).fleet.backend == "docker"


def commands_of(program: str, sub: str | None = None) -> list[list[str]]:
    """The README's commands of ``program`` (and cpppo-fleet command ``sub``), docker ones aside."""
    found = [c for c in COMMANDS if c[0] == program and subcommand(c) == sub and not on_docker(c)]
    assert found, f"README 'Using it' shows no {program} {sub or ''} command any more"
    return found


def only(program: str, sub: str | None = None) -> list[str]:
    (command,) = commands_of(program, sub)
    return command


def option(argv: list[str], flag: str) -> tuple[int, str]:
    i = argv.index(flag)
    return i + 1, argv[i + 1]


# -- running commands --------------------------------------------------------------------------

def exe(argv: list[str]) -> list[str]:
    """argv with its console script taken from this interpreter's environment."""
    return [str(BIN / argv[0]), *argv[1:]]


def run(argv: list[str], cwd: Path, code: int | None = 0, timeout: float = 60) -> str:
    done = subprocess.run(exe(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if code is not None:
        assert done.returncode == code, f"{shlex.join(argv)} -> {done.returncode}\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def first_lines(argv: list[str], enough: Callable[[list[str]], bool], timeout: float = 10.0) -> list[str]:
    """Run a command that runs until stopped (modbus_poll); return its output lines once
    ``enough`` of them are in (or ``timeout`` passes), then stop it by pid."""
    lines: list[str] = []
    with running(exe(argv)) as proc:
        q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [q.put(line) for line in proc.stdout], daemon=True).start()
        deadline = time.monotonic() + timeout
        while not enough(lines) and time.monotonic() < deadline:
            try:
                lines.append(q.get(timeout=0.2))
            except queue.Empty:
                if proc.poll() is not None:
                    break
    return lines


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except OSError:
        return True


# -- the small fleet ---------------------------------------------------------------------------

@dataclass
class SmallFleet:
    folder: Path
    plan: Plan
    example: Plan  # the repository's fleet.toml, for resolving README addresses

    def endpoint_for(self, readme_address: str, default_port: int) -> str:
        """The README's ``host[:port]`` of an example-plant device -> the same-named device of
        the small fleet, as ``host:port``."""
        host, _, port = readme_address.partition(":")
        port = int(port or default_port)
        named = [d.name for d in self.example.devices if (d.host, d.port) == (host, port)]
        assert named, f"README address {readme_address} is no device of the example fleet.toml"
        return self.plan.device(named[0]).endpoint


@pytest.fixture(scope="module")
def small_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallFleet]:
    folder = tmp_path_factory.mktemp("readme")
    text = SMALL_FLEET.format(net=NET, enip=free_port(f"{NET}.1"), modbus=free_port(f"{NET}.1"))
    (folder / "fleet.toml").write_text(text)
    plan = expand(load(folder / "fleet.toml"))
    try:
        yield SmallFleet(folder, plan, expand(load(ROOT / "fleet.toml")))
    finally:
        ProcessBackend(plan, folder / ".fleet" / plan.fleet.name).down()


# -- the tests ---------------------------------------------------------------------------------

def test_readme_commands_are_the_ones_this_test_knows() -> None:
    """A new kind of command in the README needs a test here (so none goes untested)."""
    known = {("cpppo-fleet", s) for s in ("plan", "up", "status", "poll", "logs", "restart", "down", "build")}
    known |= {(p, None) for p in ("enip_client", "enip_get_attribute", "modbus_poll",
                                  "enip_server", "modbus_sim")}
    assert {(c[0], subcommand(c)) for c in COMMANDS} == known


def test_docker_lines_name_valid_fleet_files() -> None:
    """The docker line is run by the docker tests; here its fleet file must at least validate."""
    docker = [c for c in COMMANDS if on_docker(c)]
    assert docker, "README 'Using it' no longer shows the docker backend"
    for command in docker:
        files = [w for w in command if w.endswith(".toml")]
        assert "devices" in run(["cpppo-fleet", "validate", files[-1]], cwd=ROOT)


def test_plan_of_the_example_fleet() -> None:
    out = run(only("cpppo-fleet", "plan"), cwd=ROOT)
    assert "250 devices" in out
    assert re.search(r"^line001\s+enip\s+127\.60\.0\.1:44818\s+w000$", out, re.M), out[:500]
    assert re.search(r"^pump01\s+modbus\s+127\.60\.0\.161:1502\s+w\d+$", out, re.M)


def test_fleet_lifecycle_and_clients_against_it(small_fleet: SmallFleet) -> None:
    cwd, plan = small_fleet.folder, small_fleet.plan
    out = run(only("cpppo-fleet", "plan"), cwd)
    assert all(d.name in out for d in plan.devices) and "6 devices (3 enip, 3 modbus)" in out

    up = only("cpppo-fleet", "up")
    out = run(up, cwd)
    assert "6/6 devices healthy" in out
    assert "6/6 devices healthy" in run(up, cwd)  # idempotent

    out = run(only("cpppo-fleet", "status"), cwd)  # exit 0: all healthy
    assert "6 healthy / 6 total" in out and all(d.name in out for d in plan.devices)
    out = run(only("cpppo-fleet", "poll"), cwd)
    assert "6 healthy / 6 polled" in out

    check_clients_against_fleet(small_fleet)

    logs = only("cpppo-fleet", "logs")
    out = run(logs, cwd)
    assert f"{logs[2]} is hosted by worker {plan.device(logs[2]).worker}" in out
    assert "serving" in out

    restart = only("cpppo-fleet", "restart")
    out = run(restart, cwd)
    workers = sorted({d.worker for d in plan.select([restart[2]])})
    assert f"restarted {', '.join(workers)}" in out
    deadline = time.monotonic() + 20
    while subprocess.run(exe(only("cpppo-fleet", "poll")), cwd=cwd, capture_output=True).returncode:
        assert time.monotonic() < deadline, "the restarted devices did not come back"
        time.sleep(0.2)

    out = run(only("cpppo-fleet", "down"), cwd)
    assert "is down" in out
    assert all(refused(d.host, d.port) for d in plan.devices)
    backend = ProcessBackend(plan, cwd / ".fleet" / plan.fleet.name)
    assert not backend.answering() and backend.status() == {}
    assert plan.fleet.name in run(only("cpppo-fleet", "status"), cwd, code=1)  # not healthy: exit 1


def check_clients_against_fleet(fleet: SmallFleet) -> None:
    client = only("enip_client")
    i, address = option(client, "-a")
    endpoint = fleet.endpoint_for(address, 44818)
    out = run([*client[:i], endpoint, *client[i + 1:]], fleet.folder)
    assert re.search(r"SCADA\[0-9\]\s+== \[(0, ){9}0\]: 'OK'", out), out
    assert re.search(r"SCADA\[0\]\s+<= \[42\]: 'OK'", out), out
    out = run(["enip_client", "-a", endpoint, "--print", "SCADA[0]"], fleet.folder)
    assert "== [42]" in out  # the write stuck

    attribute = only("enip_get_attribute")
    i, address = option(attribute, "-a")
    out = run([*attribute[:i], fleet.endpoint_for(address, 44818), *attribute[i + 1:]], fleet.folder)
    name = "1756-L61/B LOGIX5561"  # the product name (a SHORT_STRING: length, then the text)
    assert f"== {[len(name), *name.encode()]}".replace("'", "") in out, out

    poll = only("modbus_poll")
    i, address = option(poll, "-a")
    lines = first_lines([*poll[:i], fleet.endpoint_for(address, 502), *poll[i + 1:]],
                        lambda lines: sum("==" in line for line in lines) >= 10)
    assert [re.search(r"(4\d{4}) ==\s+(\d+)", line).groups() for line in lines if "==" in line][:10] == \
        [(str(r), "0") for r in range(40001, 40011)], lines


def test_single_simulators_as_upstream_runs_them(tmp_path: Path) -> None:
    host = f"{NET}.200"
    server = only("enip_server")
    port = free_port(host)
    with running(exe([server[0], "-a", f"{host}:{port}", *server[1:]]), listen=(host, port)):
        client = only("enip_client")
        i, _ = option(client, "-a")
        out = run([*client[:i], f"{host}:{port}", *client[i + 1:]], tmp_path)
        assert re.search(r"SCADA\[0\]\s+<= \[42\]: 'OK'", out), out
        tags = [t.split("=")[0].split("@")[0] for t in server[1:] if not t.startswith("-")]
        out = run(["enip_client", "-a", f"{host}:{port}", "--print", *tags], tmp_path)
        assert out.count("'OK'") == len(tags) == 3, out
        attribute = only("enip_get_attribute")
        out = run([attribute[0], "-a", f"{host}:{port}", "@22/1/3"], tmp_path)  # FLOAT@22/1/3
        assert "== [0, 0, 0, 0]" in out, out

    sim = only("modbus_sim")
    i, address = option(sim, "-a")
    assert address == ":1502"
    port = free_port(host)
    with running(exe([*sim[:i], f"{host}:{port}", *sim[i + 1:]]), listen=(host, port)):
        value = sim[-1].partition("=")[2]
        poll = only("modbus_poll")
        i, _ = option(poll, "-a")
        lines = first_lines([*poll[:i], f"{host}:{port}", *poll[i + 1:]],
                            lambda lines: sum("==" in line for line in lines) >= 10)
        assert sum(bool(re.search(rf"(4000\d|40010) ==\s+{value}\b", line)) for line in lines) == 10, lines
