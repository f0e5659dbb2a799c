"""The simulator's web API (spec 2.1.8), driven with urllib and checked on the wire with our
client (and pycomm3): every endpoint the spec shows, its JSON shape, its effect on the
EtherNet/IP server, and 4xx JSON answers for the caller's mistakes.  The EtherNet/IP server
and the web API share one event loop on a background thread, as ``enip_server --web`` runs
them; one test runs the CLI itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from cpppo.enip.device.model import Device
from cpppo.enip.server.transport import ServerHandle, serve
from cpppo.enip.web import WebHandle, serve_web
from cpppo.server.enip import client
from tests.support import free_port, python_module, running

SPECS = ["SCADA=INT[1000]", "FLOAT=REAL", "TEXT=SSTRING[4]", "FLAG=BOOL"]
TOKEN = "test-token-" + "x" * 20


class Served:
    """A device, its EtherNet/IP server and its web API on one event loop in a thread."""

    def __init__(self, server: ServerHandle, web: WebHandle, loop: asyncio.AbstractEventLoop,
                 done: threading.Event) -> None:
        self.server, self.web, self.loop, self.done = server, web, loop, done
        self.device = server.device

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web.port}/{path.lstrip('/')}"

    def get(self, path: str, accept: str | None = None, token: str | None = TOKEN) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body) of GET ``path`` (sending the write ``token``);
        4xx/5xx answers are returned too."""
        headers = {"Accept": accept} if accept else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url(path), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def ok(self, path: str) -> dict[str, Any]:
        status, body = self.get(path)
        assert status == 200, body
        return body

    def connector(self, timeout: float = 3.0) -> client.connector:
        return client.connector(host="127.0.0.1", port=self.server.port, timeout=timeout)


@contextlib.contextmanager
def served(specs: list[str] = SPECS, delay: Any = None, token: str | None = TOKEN) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    done = threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[ServerHandle, WebHandle]:
        device = Device.from_specs(specs)
        server = await serve(device, "127.0.0.1", 0, udp=False, delay=delay)
        web = await serve_web(device, server, "127.0.0.1", 0, on_done=done.set, token=token)
        return server, web

    server, web = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield Served(server, web, loop, done)
    finally:
        async def stop() -> None:
            web.close()
            await web.wait_closed()
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def sim() -> Iterator[Served]:
    with served() as s:
        yield s


def run_ops(conn: client.connector, *ops: str) -> list[tuple[Any, Any]]:
    """(status, value) of each operation, one at a time."""
    results = conn.synchronous(client.parse_operations(list(ops)), timeout=3.0)
    return [(sts, val) for _idx, _dsc, _req, _rpy, sts, val in results]


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- shape ------------------------------------------------------------------------------------------

def test_api_returns_everything_in_the_spec_shape(sim: Served) -> None:
    body = sim.ok("api")
    assert set(body) == {"alarm", "command", "data", "since", "until"}
    assert body["alarm"] == [] and body["command"] == {} and body["since"] is None
    assert isinstance(body["until"], float)
    data = body["data"]
    assert data["options"] == {"delay": {"value": 0.0, "range": None}}
    assert data["server"] == {"control": {"disable": False, "done": False, "latency": 0.1, "timeout": 0.2}}
    scada = data["tags"]["SCADA"]
    assert scada["error"] == 0
    assert scada["attribute"].startswith("SCADA")
    assert "INT[1000] == [0, 0, 0, 0, 0, 0, ...]" in scada["attribute"]
    assert set(data["tags"]) == {"SCADA", "FLOAT", "TEXT", "FLAG"}
    assert "connections" not in data  # none open
    assert sim.ok("api/")["data"] == data  # a trailing slash is accepted
    assert set(sim.ok("api/tags")["data"]) == {"tags"}
    assert set(sim.ok("api/options")["data"]) == {"options"}
    assert sim.ok("api/tags/SCADA")["data"] == {"tags": {"SCADA": scada}}
    assert set(sim.ok("api/tags/s*")["data"]["tags"]) == {"SCADA"}  # globs, case-insensitive


def test_glob_commands_go_to_the_entities_that_know_them(sim: Served) -> None:
    body = sim.ok("api/*/*/error=4")  # only tags have an error
    assert body["command"]["success"] is True and body["command"]["message"].count("(4)") == len(SPECS)
    assert {tag["error"] for tag in body["data"]["tags"].values()} == {4}
    assert set(body["data"]) == {"options", "server", "tags"}
    status, body = sim.get("api/*/*/nonsense=1")
    assert status == 400 and "unknown command" in body["error"]


def test_html_for_browsers_and_json_suffix(sim: Served) -> None:
    request = urllib.request.Request(sim.url("api/tags"), headers={"Accept": "text/html,*/*;q=0.8"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
        page = answer.read().decode()
    assert page.startswith("<!DOCTYPE html>") and "&quot;SCADA&quot;" in page
    status, body = sim.get("api/tags.json", accept="text/html")
    assert status == 200 and "SCADA" in body["data"]["tags"]
    with urllib.request.urlopen(sim.url("/"), timeout=5) as answer:  # / redirects to /api
        assert answer.url.endswith("/api") and "data" in json.loads(answer.read())


# --- tags -------------------------------------------------------------------------------------------

def test_tag_elements_read_and_written_both_ways(sim: Served) -> None:
    body = sim.ok("api/tags/SCADA/attribute[3]=4")
    assert body["command"] == {"message": "tags.SCADA.attribute[3]='4' (4)", "success": True}
    assert "[0, 0, 0, 4, 0, 0, ...]" in body["data"]["tags"]["SCADA"]["attribute"]
    sim.ok("api/tags/SCADA/attribute[4]/5")  # /<value> is the same as =<value>
    sim.ok("api/tags/FLOAT/attribute=2.5")
    sim.ok("api/tags/TEXT/attribute[1]=hi%20there")
    sim.ok("api/tags/FLAG/attribute[0]=true")
    with sim.connector() as conn:
        assert run_ops(conn, "SCADA[3-4]", "FLOAT", "TEXT[1]", "FLAG") == [
            (0, [4, 5]), (0, [2.5]), (0, ["hi there"]), (0, [True])]
        assert run_ops(conn, "SCADA[7]=(INT)-42") == [(0, True)]
    body = sim.ok("api/tags/SCADA/attribute[7]")
    assert body["command"] == {"message": "tags.SCADA.attribute[7]: -42", "success": True}


def test_forced_tag_error_fails_every_access_until_cleared(sim: Served) -> None:
    body = sim.ok("api/tags/SCADA/error=8")
    assert body["data"]["tags"]["SCADA"]["error"] == 8 and body["command"]["success"] is True
    with sim.connector() as conn:
        (read_sts, read_val), (write_sts, _), (other_sts, _) = run_ops(
            conn, "SCADA[0]", "SCADA[1]=(INT)1", "FLOAT")
        assert (read_sts, read_val, write_sts, other_sts) == (8, None, 8, 0)
        assert sim.ok("api/tags/SCADA/error/0")["data"]["tags"]["SCADA"]["error"] == 0
        assert run_ops(conn, "SCADA[0]") == [(0, [0])]
        sim.ok("api/tags/SCADA/error=0x05")
        assert run_ops(conn, "SCADA[0]")[0][0] == 5
    assert sim.device.tag("SCADA").attribute.error == 5


@pytest.mark.interop
def test_forced_error_seen_by_pycomm3(sim: Served) -> None:
    import pycomm3  # a [test] dependency: missing is an error, not a skip
    sim.ok("api/tags/SCADA/attribute[2]=77")
    with pycomm3.LogixDriver(f"127.0.0.1:{sim.server.port}", init_program_tags=False) as plc:
        assert plc.read("SCADA[2]").value == 77
        sim.ok("api/tags/SCADA/error=8")
        assert plc.read("SCADA[2]").error
        sim.ok("api/tags/SCADA/error=0")
        assert plc.read("SCADA[2]").value == 77


# --- options and server control ---------------------------------------------------------------------

def test_delay_changes_live_and_shows_in_options(sim: Served) -> None:
    body = sim.ok("api/options/delay/value/0.5")
    assert body["command"] == {"message": "options.delay.value='0.5' (0.5)", "success": True}
    assert body["data"]["options"]["delay"] == {"value": 0.5, "range": None}
    assert sim.server.delay == 0.5
    body = sim.ok("api/options/delay/range=0.5-1.5")
    assert body["data"]["options"]["delay"] == {"value": 1.0, "range": "0.5-1.5"}
    assert sim.server.delay == (0.5, 1.5)
    assert sim.ok("api/options")["data"]["options"]["delay"]["range"] == "0.5-1.5"
    # "never respond (in time)": a long delay makes a client time out; a zero delay restores it
    sim.ok("api/options/delay/value=30")
    with pytest.raises(client.ENIPTimeout), sim.connector(timeout=0.3) as conn:
        run_ops(conn, "SCADA[0]")
    assert sim.ok("api/options/delay/value=0")["data"]["options"]["delay"] == {"value": 0.0, "range": None}
    assert sim.server.delay is None
    with sim.connector() as conn:
        assert run_ops(conn, "SCADA[0]") == [(0, [0])]


def test_latency_and_timeout_are_kept(sim: Served) -> None:
    assert sim.ok("api/server/control/latency=0.5")["data"]["server"]["control"]["latency"] == 0.5
    assert sim.ok("api/server/control/timeout/1.5")["data"]["server"]["control"]["timeout"] == 1.5
    body = sim.ok("api/server/control/latency")
    assert body["command"] == {"message": "server.control.latency: 0.5", "success": True}


def test_disable_closes_the_port_and_connections_and_enable_restores(sim: Served) -> None:
    port = sim.server.port
    conn = sim.connector()
    try:
        assert run_ops(conn, "SCADA[0]") == [(0, [0])]
        body = sim.ok("api/server/control/disable/true")
        assert body["data"]["server"]["control"]["disable"] is True
        with pytest.raises(client.ENIPError):  # the open connection was closed
            run_ops(conn, "SCADA[0]")
    finally:
        conn.close()
    with pytest.raises(client.ENIPConnectionError):  # and no new one is accepted
        sim.connector(timeout=1.0)
    assert sim.ok("api/server/control/disable")["command"]["message"] == "server.control.disable: True"
    body = sim.ok("api/server/control/disable=false")
    assert body["data"]["server"]["control"]["disable"] is False and sim.server.port == port
    with sim.connector() as conn:
        assert run_ops(conn, "SCADA[0]") == [(0, [0])]


def test_faults_through_the_web_api_are_the_fleets_faults(sim: Served) -> None:
    """server/control/fault takes what `cpppo-fleet fault` takes; the device's FaultState (the
    one the fleet's control channel sets) is what changes, and clear restores service."""
    with sim.connector() as conn:
        body = sim.ok("api/server/control/fault=error%200x08")
        assert body["command"]["success"] and "error 0x08" in body["command"]["message"]
        assert sim.device.faults.active.kind == "error"
        assert run_ops(conn, "SCADA[0]")[0][0] == 0x08
        sim.ok("api/server/control/fault=clear")
        assert sim.device.faults.active is None and run_ops(conn, "SCADA[0]") == [(0, [0])]
    sim.ok("api/server/control/fault=offline%20for%2030s")
    with pytest.raises(client.ENIPConnectionError):
        sim.connector(timeout=1.0)
    assert sim.device.faults.active.until is not None
    sim.ok("api/server/control/fault=clear")
    with sim.connector() as conn:
        assert run_ops(conn, "SCADA[0]") == [(0, [0])]
    status, body = sim.get("api/server/control/fault=melt")
    assert status == 400 and "unknown fault kind 'melt'" in body["error"]


def test_done_stops_the_server_and_signals_the_owner(sim: Served) -> None:
    body = sim.ok("api/server/control/done/true")
    assert body["data"]["server"]["control"]["done"] is True
    assert sim.done.wait(5)
    with pytest.raises(client.ENIPConnectionError):
        sim.connector(timeout=1.0)
    status, body = sim.get("api/server/control/disable=false")
    assert status == 409 and "done" in body["error"]


# --- connections ------------------------------------------------------------------------------------

def test_connections_listed_and_terminated_by_eof(sim: Served) -> None:
    empty = sim.ok("api/connections")
    assert empty["data"] == {} and empty["command"] is None
    first, second = sim.connector(), sim.connector()
    try:
        run_ops(first, "SCADA[0]", "SCADA[1]")
        run_ops(second, "SCADA[0]")
        connections = sim.ok("api/connections")["data"]["connections"]
        ports = {conn.socket.getsockname()[1]: conn for conn in (first, second)}
        assert set(connections) == {f"127_0_0_1_{p}" for p in ports}
        entry = connections[f"127_0_0_1_{first.socket.getsockname()[1]}"]
        assert entry["eof"] is False and entry["interface"] == "127.0.0.1"
        assert entry["requests"] == 3 and entry["received"] > 3 * 24  # register + 2 reads
        # one connection by name
        key = f"127_0_0_1_{second.socket.getsockname()[1]}"
        assert sim.ok(f"api/connections/{key}/eof/true")["command"]["success"] is True
        wait_for(lambda: set(sim.ok("api/connections")["data"]["connections"]) == set(connections) - {key})
        with pytest.raises(client.ENIPError):
            run_ops(second, "SCADA[0]")
        # then all of them
        body = sim.ok("api/connections/*/eof/true")
        assert body["command"]["success"] is True
        wait_for(lambda: sim.ok("api/connections")["data"] == {})
        with pytest.raises(client.ENIPError):
            run_ops(first, "SCADA[0]")
    finally:
        first.close()
        second.close()


# --- mistakes get 4xx JSON answers --------------------------------------------------------------

@pytest.mark.parametrize(("path", "status", "words"), [
    ("api/tags/NOPE", 404, "NOPE"),
    ("api/tags/NOPE/error=8", 404, "NOPE"),
    ("api/nothing", 404, "nothing"),
    ("api/tags/SCADA/attribute[1000]", 400, "outside"),
    ("api/tags/SCADA/attribute[x]=1", 400, "not a number"),
    ("api/tags/SCADA/attribute[3]=abc", 400, "not a INT value"),
    ("api/tags/SCADA/attribute[3]=99999", 400, "out of range"),
    ("api/tags/SCADA/attribute=[1,2]", 400, "1000 elements"),
    ("api/tags/SCADA/error=300", 400, "0-255"),
    ("api/tags/SCADA/bogus=1", 400, "unknown command"),
    ("api/options/delay/value=-1", 400, "outside"),
    ("api/options/delay/range=2-1", 400, "above"),
    ("api/options/delay/range=abc", 400, "lo"),
    ("api/server/control/disable=maybe", 400, "boolean"),
    ("api/server/control/latency=0", 400, "above 0"),
    ("api?since=yesterday", 400, "since"),
    ("index.html", 404, "/api"),
])
def test_mistakes_answer_4xx_json(sim: Served, path: str, status: int, words: str) -> None:
    got, body = sim.get(path)
    assert got == status and words in body["error"], body
    assert body["command"]["success"] is False
    assert sim.ok("api/tags/SCADA/attribute[3]")["command"]["success"] is True  # still serving


def test_only_get_and_head(sim: Served) -> None:
    request = urllib.request.Request(sim.url("api"), data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 405 and info.value.headers["Allow"] == "GET, HEAD"
    info.value.close()
    with urllib.request.urlopen(urllib.request.Request(sim.url("api"), method="HEAD"), timeout=5) as answer:
        assert answer.status == 200 and answer.read() == b""


@pytest.mark.parametrize(("head", "status"), [(b"GARBAGE\r\n\r\n", b"400"),
                                              (b"GET /api HTTP/1.1\r\nX: " + b"y" * 20000, b"400")])
def test_malformed_requests_get_an_answer_not_a_crash(sim: Served, head: bytes, status: bytes) -> None:
    with socket.create_connection(("127.0.0.1", sim.web.port), timeout=5) as raw:
        raw.sendall(head)
        assert raw.recv(64).split(b" ")[1] == status  # HTTP/1.0 when the request line has no version
    assert sim.ok("api/tags/SCADA")["command"] == {}


# --- the CLI ----------------------------------------------------------------------------------------

def test_enip_server_cli_serves_the_web_api_until_done(monkeypatch: pytest.MonkeyPatch) -> None:
    eport, wport = free_port(), free_port()
    monkeypatch.setenv("CPPPO_WEB_TOKEN", TOKEN)  # the token from the environment
    argv = python_module("cpppo.server.enip", "-v", "-a", f"127.0.0.1:{eport}", "--web",
                         f":{wport}", "SCADA=INT[1000]", "--delay", "0.25-0.75")
    with running(argv, listen=("127.0.0.1", wport)) as proc:
        def get(path: str) -> Any:
            request = urllib.request.Request(f"http://127.0.0.1:{wport}/{path}",
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=5) as answer:
                return json.loads(answer.read())
        assert get("api/options")["data"]["options"]["delay"] == {"value": 0.5, "range": "0.25-0.75"}
        get("api/options/delay/value=0")
        get("api/tags/SCADA/attribute[3]=4")
        with client.connector(host="127.0.0.1", port=eport, timeout=3.0) as conn:
            assert run_ops(conn, "SCADA[2-3]") == [(0, [0, 4])]
        assert get("api/server/control/done/true")["data"]["server"]["control"]["done"] is True
        assert proc.wait(10) == 0
        assert "web API on http://127.0.0.1" in proc.stdout.read()


def test_enip_server_cli_bad_web_address() -> None:
    argv = python_module("cpppo.server.enip", "-a", "127.0.0.1:0", "--web", "127.0.0.1:http", "SCADA=INT[1]")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "bad --web" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = python_module("cpppo.server.enip", "-a", "127.0.0.1:0", "--web", f"127.0.0.1:{port}",
                             "SCADA=INT[1]")
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot serve the web API on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


# --- the write token ---------------------------------------------------------------------------------

WRITES = ["api/options/delay/value=0.5", "api/options/delay/range=0.1-0.2", "api/server/control/done=true",
          "api/server/control/disable=true", "api/server/control/latency=0.5",
          "api/server/control/timeout=0.5", "api/tags/SCADA/attribute[3]=4", "api/tags/FLOAT/attribute=2.5",
          "api/tags/SCADA/error=8", "api/connections/*/eof=true",
          "api?group=tags&match=SCADA&command=error&value=8", "api/server/control/fault=timeout"]


def _state(sim: Served) -> dict[str, Any]:
    return sim.ok("api")["data"]


@pytest.mark.parametrize("path", WRITES)
def test_every_write_needs_the_token(sim: Served, path: str) -> None:
    before = _state(sim)
    status, body = sim.get(path, token=None)
    assert status == 401 and "Authorization: Bearer" in body["error"] and body["command"]["success"] is False
    status, body = sim.get(path, token="wrong-" + TOKEN)
    assert status == 401 and body["error"] == "wrong write token"
    assert _state(sim) == before and not sim.done.is_set()  # nothing changed
    status, body = sim.get(path)  # the right token
    assert status == 200, body
    if not path.startswith("api/connections"):  # (no connection is open to close)
        assert body["command"]["success"] is True and _state(sim) != before


@pytest.mark.parametrize("path", WRITES)
def test_without_a_token_the_api_is_read_only(path: str) -> None:
    with served(token=None) as sim:
        before = _state(sim)
        for token in (None, TOKEN):
            status, body = sim.get(path, token=token)
            assert status == 403 and "read-only" in body["error"]
        assert _state(sim) == before
        assert sim.get("api/tags/SCADA/attribute[3]", token=None)[0] == 200  # reads still work


def test_oversized_traversal_and_unknown_methods_change_nothing(sim: Served) -> None:
    before = _state(sim)
    with socket.create_connection(("127.0.0.1", sim.web.port), timeout=5) as raw:  # a long request line
        raw.sendall(b"GET /api/tags/SCADA/attribute[3]=" + b"9" * 20000 + b" HTTP/1.1\r\n\r\n")
        assert raw.recv(64).split(b" ")[1].startswith(b"4")
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        request = urllib.request.Request(sim.url("api/tags/SCADA/attribute[3]=9"), method=method,
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 405
        info.value.close()
    request = urllib.request.Request(sim.url("api"), data=b"x" * 100_000, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert 400 <= info.value.code < 500
    info.value.close()
    with socket.create_connection(("127.0.0.1", sim.web.port), timeout=5) as raw:  # no normalising to /api
        raw.sendall(b"GET /x/../../etc/passwd HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        answer = raw.recv(4096)
    assert answer.split(b" ")[1] == b"404" and b"root:" not in answer
    assert _state(sim) == before


def test_enip_server_cli_web_token_flag_and_read_only_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CPPPO_WEB_TOKEN", raising=False)
    for extra, writes in ((["--web-token", TOKEN], {None: 401, TOKEN: 200}), ([], {None: 403, TOKEN: 403})):
        eport, wport = free_port(), free_port()
        argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{eport}", "--web", f"127.0.0.1:{wport}",
                             *extra, "SCADA=INT[10]")
        with running(argv, listen=("127.0.0.1", wport)):
            for token, status in writes.items():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                request = urllib.request.Request(f"http://127.0.0.1:{wport}/api/tags/SCADA/attribute[1]=5",
                                                 headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=5) as answer:
                        got = answer.status
                except urllib.error.HTTPError as exc:
                    got = exc.code
                    exc.close()
                assert got == status, (extra, token)
