"""The lab-host provisioning (ansible/, vagrant/, packer/) is well-formed and consistent."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE = ROOT / "ansible"


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="ansible-core not installed")
def test_playbook_passes_ansible_syntax_check():
    proc = subprocess.run(["ansible-playbook", "--syntax-check", "playbook.yml"], cwd=ANSIBLE,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _tasks(tasks: list[dict]):
    """Every task, blocks flattened."""
    for task in tasks:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key, []))


def test_role_uses_only_builtin_modules_and_defined_variables():
    role = ANSIBLE / "roles/labhost"
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
    defined = set(defaults)
    modules: set[str] = set()
    text = ""
    for path in [*sorted((role / "tasks").glob("*.yml")), role / "handlers/main.yml"]:
        text += path.read_text()
        for task in _tasks(yaml.safe_load(path.read_text())):
            modules |= {key for key in task if "." in key}
            defined |= {task["register"]} if "register" in task else set()
            defined |= set(task.get("ansible.builtin.set_fact", {}))
    assert modules and all(m.startswith("ansible.builtin.") for m in modules), modules
    used = set(re.findall(r"cpppo_fleet_\w+", text))
    assert used <= defined, used - defined


@pytest.mark.parametrize("interface,user", [("", "cpppo"), ("eth1", "root")])
def test_systemd_unit_runs_the_fleet_commands(interface, user):
    defaults = yaml.safe_load((ANSIBLE / "roles/labhost/defaults/main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["bool"] = lambda v: str(v).lower() in ("1", "true", "yes", "on")  # ansible's filter
    home = "/opt/cpppo-fleet"
    values = {k: (v.replace("{{ cpppo_fleet_home }}", home) if isinstance(v, str) else v)
              for k, v in defaults.items()}
    values["cpppo_fleet_venv"] = f"{home}/venv"
    values["cpppo_fleet_interface"] = interface
    unit = env.from_string((ANSIBLE / "roles/labhost/templates/cpppo-fleet.service.j2").read_text())
    text = unit.render(**values)
    assert f"User={user}" in text
    assert (f"ExecStart={home}/venv/bin/cpppo-fleet up {home}/fleet.toml --state-dir {home}/state "
            "--timeout ${CPPPO_FLEET_UP_TIMEOUT}") in text
    assert f"EnvironmentFile={home}/service.env" in text
    down = f"{home}/venv/bin/cpppo-fleet down {home}/fleet.toml --state-dir {home}/state"
    assert f"ExecStop={down}\n" in text
    # a failed start skips ExecStop: ExecStopPost takes the fleet down then, and only then
    assert f"ExecStopPost=/bin/sh -c 'test \"$${{SERVICE_RESULT}}\" = success || exec {down}'" in text


def test_vagrant_and_packer_provision_with_the_same_playbook():
    vagrantfile = (ROOT / "vagrant/Vagrantfile").read_text()
    packer = (ROOT / "packer/cpppo-fleet.pkr.hcl").read_text()
    assert 'ansible.playbook = File.join(root, "ansible", "playbook.yml")' in vagrantfile
    assert len(re.findall(r'playbook_file\s*=\s*"\$\{path.root\}/../ansible/playbook.yml"', packer)) == 2
    assert (ANSIBLE / "playbook.yml").exists()
