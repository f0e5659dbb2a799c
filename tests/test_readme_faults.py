"""The README's "Faults on demand" commands are tests: each line of its sh block is run for
real against a small fleet of the example plant's shape (tests.test_readme), and its
``[[fault]]`` example validates."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.backends.process import ProcessBackend
from fleet.config import load
from fleet.plan import expand
from tests.support import ROOT, free_port
from tests.test_readme import SMALL_FLEET, run

pytestmark = pytest.mark.slow

NET = f"127.89.{20 + (os.getpid() + 101) % 200}"


def section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Faults on demand\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Faults on demand' section"
    return match.group(1)


def fault_commands() -> list[list[str]]:
    (block,) = re.findall(r"^```sh\n(.*?)^```", section(), re.S | re.M)
    return [words for line in block.splitlines() if (words := shlex.split(line, comments=True))]


@pytest.fixture(scope="module")
def fleet_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("readme-faults")
    (folder / "fleet.toml").write_text(SMALL_FLEET.format(net=NET, enip=free_port(f"{NET}.1"),
                                                          modbus=free_port(f"{NET}.1")))
    plan = expand(load(folder / "fleet.toml"))
    try:
        run(["cpppo-fleet", "up"], folder)
        yield folder
    finally:
        ProcessBackend(plan, folder / ".fleet" / plan.fleet.name).down()


def test_every_fault_command_of_the_readme_works(fleet_folder: Path) -> None:
    commands = fault_commands()
    kinds = {c[3] for c in commands if c[1] == "fault" and not c[2].startswith("--")}
    assert kinds == {"latency", "timeout", "offline", "error", "drop", "corrupt", "flap", "freeze"}
    for argv in commands:
        out = run(argv, fleet_folder)
        if argv[1] == "fault" and argv[2] != "--clear":
            assert re.search(r" on [1-9]\d* devices? ", out), (argv, out)
        if argv[1:] == ["faults"]:
            assert "active fault" in out
    active = json.loads(run(["cpppo-fleet", "faults", "--json"], fleet_folder))
    assert "pump01" not in active and "line002" in active  # --clear 'pump*' ended the pumps' faults
    run(["cpppo-fleet", "fault", "--clear"], fleet_folder)
    assert json.loads(run(["cpppo-fleet", "faults", "--json"], fleet_folder)) == {}


def test_the_schedule_example_validates(tmp_path: Path) -> None:
    (block,) = re.findall(r"^```toml\n(.*?)^```", section(), re.S | re.M)
    rows = tomllib.loads(block)["fault"]
    assert [r["kind"] for r in rows] == ["offline", "latency"]
    text = (ROOT / "fleet.toml").read_text() + "\n" + block
    (tmp_path / "fleet.toml").write_text(text)
    assert "devices" in run(["cpppo-fleet", "validate", str(tmp_path / "fleet.toml")], tmp_path)
