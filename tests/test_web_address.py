"""Where a fleet's page and /metrics are served (``[fleet] web``): by default a free loopback
port, so two fleets up at once never clash; a fixed ``web = "127.0.0.1:<port>"`` is used as
given; a second fleet asking for a port already taken still comes up, and ``up`` and
``status --json`` say in one line why its page is not served; a bad value is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.config import parse
from fleet.table import ConfigError
from tests.support import free_port
from tests.web_support import fetch, live_fleet

pytestmark = pytest.mark.slow


def shown(url: str) -> set[str]:
    status, body, _ = fetch(url + "api/status")
    assert status == 200
    return {d[0] for d in json.loads(body)["devices"]}


def test_two_fleets_by_default_and_a_fixed_port_taken_twice(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (live_fleet(tmp_path / "a", f"wa{os.getpid()}", 11) as a,
          live_fleet(tmp_path / "b", f"wb{os.getpid()}", 12) as b):
        web_a, web_b = a.status()["web"], b.status()["web"]
        assert web_a != web_b and web_a.startswith("http://127.0.0.1:") and web_b.startswith("http://127.0.0.1:")
        # each page and /metrics is its own fleet's (the same device names, other addresses)
        assert shown(web_a) == shown(web_b) == {d.name for d in a.plan.devices}
        for fleet in (a, b):
            text = fetch(fleet.status()["metrics"])[1].decode()
            addresses = {s.labels["address"] for f in text_string_to_metric_families(text)
                         if f.name == "cpppo_fleet_device_up" for s in f.samples}
            assert addresses == {d.endpoint for d in fleet.plan.devices}

    port = free_port()
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    with live_fleet(tmp_path / "c", f"wc{os.getpid()}", 13, web=f"127.0.0.1:{port}") as c:
        assert c.status()["web"] == f"http://127.0.0.1:{port}/"
        assert c.status()["metrics"] == f"http://127.0.0.1:{port}/metrics"
        assert shown(c.status()["web"]) == {d.name for d in c.plan.devices}
        with live_fleet(tmp_path / "d", f"wd{os.getpid()}", 14, web=f"127.0.0.1:{port}") as d:
            out = d.cli("up")  # already up: `up` again says where things are
            why = f"cannot serve the fleet page on 127.0.0.1:{port}"
            assert f"page:   not served: {why}" in out and "metrics:" not in out
            status = d.status()
            assert status["web"] is None and why in status["web_error"]
            assert d.all_healthy()  # the devices are served and polled all the same
        assert shown(c.status()["web"]) == {d.name for d in c.plan.devices}  # the first fleet's, still


@pytest.mark.parametrize("value", ["9177", "127.0.0.1:port", "127.0.0.1:70000", "", "127.0.0.1:-1"])
def test_a_bad_web_address_is_one_line(value: str) -> None:
    text = f'[fleet]\nname = "x"\nweb = "{value}"\n[[device]]\nkind = "modbus"\nregisters = ["40001=0"]\n'
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message and "web" in message and "<interface>:<port>" in message
