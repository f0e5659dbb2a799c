"""A multi-host fleet (:mod:`fleet.hosts`) on its lab hosts: deployed by ``ansible-playbook``
with the labhost role (each host gets its shard's fleet file and runs it under systemd), and
asked over SSH.

``status``, ``poll``, ``logs``, ``restart`` and ``fault`` run the same ``cpppo-fleet`` command
on each host that has a part in it (its shard's fleet file, ``--json`` where there is one), in
parallel, each bounded by ``[hosts] timeout`` (and SSH's ConnectTimeout), and merge the answers.
SSH, not each host's web endpoint: it is what Ansible uses (no second way in to keep open, and
the fleet page stays on each host's loopback), every command exists there (logs, restarts and
faults have no HTTP form), and a host that does not answer is told apart from one whose fleet is
down.  A host that does not answer within the bounds is ``unreachable`` and its devices
``unknown``; the other hosts' answers stand.

The controller's own state is ``.fleet/<name>/hosts/`` beside fleet.toml: the shards' fleet
files, the inventory given to Ansible and the last playbook run's output.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.hosts import LabHost, MultiHost, _ansible_tool

# where the labhost role puts things (ansible/roles/labhost/defaults/main.yml)
HOME = "/opt/cpppo-fleet"
REMOTE_FLEET = f"{HOME}/fleet.toml"
REMOTE_STATE = f"{HOME}/state"
REMOTE_COMMAND = f"{HOME}/venv/bin/cpppo-fleet"
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR")  # as the project's ansible.cfg: lab hosts are rebuilt often
CONNECT_TIMEOUT = 5
PLAYBOOK_TIMEOUT = 3600.0


class LabError(Exception):
    """A deployment that could not run at all (no ansible-playbook, no role)."""


def ansible_dir() -> Path:
    """The project's ``ansible/`` folder (the playbook and the labhost role):
    ``$CPPPO_FLEET_ANSIBLE`` or the source tree this package runs from."""
    given = os.environ.get("CPPPO_FLEET_ANSIBLE")
    folder = Path(given) if given else Path(__file__).resolve().parent.parent / "ansible"
    if not (folder / "playbook.yml").is_file() or not (folder / "roles" / "labhost").is_dir():
        raise LabError(f"no labhost playbook in {folder} (run from a cpppo-fleet source tree, or set "
                       "CPPPO_FLEET_ANSIBLE to its ansible/ folder)")
    return folder


def state_dir(fleet_file: Path, lab: MultiHost) -> Path:
    return fleet_file.resolve().parent / ".fleet" / lab.name / "hosts"


# --- deploying with Ansible ---------------------------------------------------------------------

@dataclass
class PlaybookResult:
    returncode: int
    output: str
    seconds: float
    recap: dict[str, dict[str, int]]
    log: Path

    def failed_hosts(self) -> dict[str, str]:
        """host -> "unreachable" / "failed" for the hosts whose part did not work."""
        out = {}
        for host, counts in self.recap.items():
            if counts.get("unreachable"):
                out[host] = "unreachable"
            elif counts.get("failed"):
                out[host] = "failed"
        return out

    def error_of(self, host: str) -> str:
        """The last line Ansible printed about ``host``'s failure."""
        lines = [line for line in self.output.splitlines()
                 if line.startswith(("fatal:", "failed:")) and f"[{host}]" in line]
        return lines[-1][:400] if lines else ""


def write_inventory(lab: MultiHost, folder: Path, hosts: list[LabHost]) -> Path:
    """The shards' fleet files and an INI inventory of ``hosts`` (group labhosts) naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["[labhosts]"]
    for host in hosts:
        fleet_file = folder / f"{host.name}.toml"
        fleet_file.write_text(lab.shard(host.name).toml)
        fields = {"ansible_host": host.address, "ansible_user": host.user, "ansible_port": host.port,
                  "cpppo_fleet_fleet_file": fleet_file, "cpppo_fleet_interface": host.interface}
        if host.key:
            fields["ansible_ssh_private_key_file"] = host.key
        lines.append(f"{host.name} " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in fields.items()))
    common = " ".join((*SSH_OPTIONS, "-o", f"ConnectTimeout={CONNECT_TIMEOUT}"))
    lines += ["", "[labhosts:vars]", f"ansible_ssh_common_args='{common}'", ""]
    inventory = folder / "inventory.ini"
    inventory.write_text("\n".join(lines))
    return inventory


def run_playbook(lab: MultiHost, folder: Path, hosts: list[LabHost], playbook: str,
                 extra: dict[str, str], echo: Callable[[str], None] | None = None) -> PlaybookResult:
    """``ansible-playbook`` (the project's ansible.cfg) on ``hosts``; its output goes to
    ``folder/<playbook>.log`` and, line by line, to ``echo``."""
    tool = _ansible_tool("ansible-playbook")
    if tool is None:
        raise LabError("ansible-playbook not found: a multi-host fleet deploys with Ansible "
                       "(pip install ansible-core)")
    where = ansible_dir()
    inventory = write_inventory(lab, folder, hosts)
    args = [tool, "-i", str(inventory), str(where / playbook), "--timeout", str(CONNECT_TIMEOUT * 2)]
    variables = {"cpppo_fleet_controller_python": sys.executable, **lab.extra_vars, **extra}
    for key, value in variables.items():
        args += ["-e", f"{key}={value}"]
    env = {**os.environ, "ANSIBLE_CONFIG": str(where / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PYTHONUNBUFFERED": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "ANSIBLE_LOCAL_TEMP": str(folder / "ansible-tmp")}
    log = folder / f"{Path(playbook).stem}.log"
    begun = time.monotonic()
    lines = []
    with open(log, "w", buffering=1) as sink:  # line by line: a slow run can be followed
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        try:
            deadline = begun + PLAYBOOK_TIMEOUT
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line)
                sink.write(line)
                if echo is not None and line.startswith(("PLAY", "TASK", "fatal:", "changed:")):
                    echo(line.rstrip())
                if time.monotonic() > deadline:
                    break
        finally:
            if proc.poll() is None and time.monotonic() > begun + PLAYBOOK_TIMEOUT:
                proc.kill()
            proc.wait(timeout=60)
    output = "".join(lines)
    return PlaybookResult(proc.returncode, output, time.monotonic() - begun, playbook_recap(output), log)


def playbook_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of ansible-playbook's ``output``: host -> {ok, changed, unreachable, ...}."""
    import re

    result = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            result[match[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[2])}
    return result


# --- asking the hosts over SSH ------------------------------------------------------------------

@dataclass
class HostAnswer:
    """One host's answer to a command: ``reached`` False when SSH could not get there."""

    host: LabHost
    reached: bool
    returncode: int | None
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        text = (self.stderr or self.stdout).strip().splitlines()
        return text[-1] if text else f"exit status {self.returncode}"

    def json(self) -> Any | None:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None


def ssh_command(host: LabHost, remote: list[str]) -> list[str]:
    """``ssh`` running ``remote`` (a cpppo-fleet command line) on ``host``."""
    if shutil.which("ssh") is None:
        raise LabError("ssh not found (apt-get install openssh-client)")
    args = ["ssh", *SSH_OPTIONS, "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-p", str(host.port)]
    if host.key:
        args += ["-i", host.key, "-o", "IdentitiesOnly=yes"]
    sudo = [] if host.user == "root" else ["sudo", "-n"]
    return [*args, f"{host.user}@{host.address}", shlex.join([*sudo, *remote])]


def remote_fleet(command: str, *args: str) -> list[str]:
    """``cpppo-fleet COMMAND ARGS... <the host's fleet file> --state-dir <its state>``."""
    return [REMOTE_COMMAND, command, *args, REMOTE_FLEET, "--state-dir", REMOTE_STATE]


def ask(host: LabHost, remote: list[str], timeout: float) -> HostAnswer:
    """Run ``remote`` on ``host``, within ``timeout`` seconds."""
    try:
        proc = subprocess.run(ssh_command(host, remote), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return HostAnswer(host, False, None, "", f"no answer within {timeout:g}s")
    if proc.returncode == 255:  # ssh's own failure: no connection, no authentication
        return HostAnswer(host, False, 255, proc.stdout, proc.stderr or "ssh failed")
    return HostAnswer(host, True, proc.returncode, proc.stdout, proc.stderr)


def ask_all(lab: MultiHost, commands: dict[str, list[str]],
            timeout: float | None = None) -> dict[str, HostAnswer]:
    """``commands`` (host name -> remote command) on their hosts, in parallel."""
    if not commands:
        return {}
    bound = lab.timeout if timeout is None else timeout
    with ThreadPoolExecutor(max_workers=min(32, len(commands))) as pool:
        futures = {name: pool.submit(ask, lab.shard(name).host, remote, bound)
                   for name, remote in commands.items()}
        return {name: future.result() for name, future in futures.items()}


# --- the whole fleet's status --------------------------------------------------------------------

def fleet_status(lab: MultiHost) -> dict[str, Any]:
    """Every host's ``status --json``, merged: each device with its host; a host that does not
    answer (or whose answer is no status) shows as such, with its devices ``unknown``."""
    answers = ask_all(lab, {s.host.name: remote_fleet("status", "--json") for s in lab.shards})
    hosts, devices = {}, []
    for shard in lab.shards:
        answer = answers[shard.host.name]
        report = answer.json() if answer.reached else None
        if isinstance(report, dict) and isinstance(report.get("devices"), list):
            state = "up" if report.get("up") else "down"
            hosts[shard.host.name] = {"address": shard.host.address, "state": state, "error": None,
                                      "healthy": report.get("healthy", 0), "total": len(shard.plan.devices),
                                      "web": report.get("web")}
            devices += [{**d, "lab_host": shard.host.name} for d in report["devices"]]
            continue
        state = "unreachable" if not answer.reached else "not deployed"
        error = f"host {state}: {answer.error}"
        hosts[shard.host.name] = {"address": shard.host.address, "state": state, "error": error,
                                  "healthy": 0, "total": len(shard.plan.devices), "web": None}
        devices += [{"name": d.name, "kind": d.kind, "endpoint": d.endpoint, "worker": d.worker,
                     "state": "unknown", "uptime": None, "restarts": 0, "last_ok": None, "error": error,
                     "checked": None, "latency": None, "p50": None, "p99": None, "fault": None,
                     "lab_host": shard.host.name} for d in shard.plan.devices]
    healthy = sum(d["state"] == "healthy" for d in devices)
    counts: dict[str, int] = {}
    for d in devices:
        if d["state"] != "healthy":
            counts[d["state"]] = counts.get(d["state"], 0) + 1
    rest = "".join(f", {n} {state}" for state, n in sorted(counts.items()))
    unreachable = sorted(n for n, h in hosts.items() if h["state"] == "unreachable")
    summary = (f"{healthy} healthy / {len(devices)} total{rest} on {len(hosts)} hosts"
               + (f" ({', '.join(unreachable)} unreachable)" if unreachable else ""))
    return {"fleet": lab.name, "summary": summary, "healthy": healthy, "total": len(devices),
            "up": all(h["state"] == "up" for h in hosts.values()), "hosts": hosts, "devices": devices}


def wait_healthy(lab: MultiHost, timeout: float, hosts: list[str] | None = None) -> dict[str, Any]:
    """:func:`fleet_status` until every device of ``hosts`` (default: all) is healthy, or
    ``timeout`` seconds passed; the last status."""
    deadline = time.monotonic() + timeout
    while True:
        status = fleet_status(lab)
        wanted = [d for d in status["devices"] if hosts is None or d["lab_host"] in hosts]
        if all(d["state"] == "healthy" for d in wanted) or time.monotonic() > deadline:
            return status
        time.sleep(1.0)
