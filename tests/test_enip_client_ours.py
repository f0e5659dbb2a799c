"""The EtherNet/IP clients against our own server (``Device.from_specs`` + ``serve`` in an
event loop on a background thread): the asyncio client, UDP "broadcast" gathering from
several devices on loopback addresses, and the blocking client's spec examples."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from cpppo.enip.client.aclient import AsyncClient, ENIPConnectionError, ENIPError, ENIPStatusError
from cpppo.enip.device import model as device_mod
from cpppo.enip.server import transport as server_mod
from cpppo.server.enip import client
from tests.support import free_port

SPECS = ["Tag=DINT[10]", "SCADA=INT[1000]", "TEXT=SSTRING[10]", "FLOAT=REAL", "Motor_Velocity@0x93/3/10=REAL"]


@contextlib.contextmanager
def serving(hosts: list[str], port: int = 0, delay=None, specs: list[str] | None = None) -> Iterator[list]:
    """Serve one device per host (all on ``port``) from an event loop in a thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    handles: list = []
    errors: list[BaseException] = []

    async def start() -> None:
        try:
            for n, host in enumerate(hosts):
                dev = device_mod.Device.from_specs(
                    specs or SPECS, identity={"product_name": f"Device {n}", "serial_number": 0x1000 + n})
                handles.append(await server_mod.serve(dev, host=host, port=port, udp=True, delay=delay))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait(15)
    try:
        if errors:
            raise errors[0]
        yield handles
    finally:
        async def stop() -> None:
            for handle in handles:
                handle.close()
                await handle.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def ours() -> Iterator[tuple[str, int]]:
    with serving(["127.0.0.1"]) as handles:
        yield "127.0.0.1", handles[0].port


def test_aclient_contract(ours) -> None:
    host, port = ours

    async def go() -> None:
        async with AsyncClient(host, port, timeout=2.0) as c:
            ident = await c.list_identity()
            assert ident.product_name == "Device 0" and ident.serial_number == 0x1000
            for key in ("vendor_id", "product_type", "product_code", "revision", "status", "state"):
                assert key in ident
            await c.write("SCADA[0]", [1])
            await c.write("SCADA[1-3]", [2, 3, 4])
            assert await c.read("SCADA[0-9]") == [1, 2, 3, 4, 0, 0, 0, 0, 0, 0]
            assert await c.read("SCADA[2]") == 3
            await c.write("FLOAT", 2.5)
            assert await c.read("FLOAT") == 2.5
            big = await c.read("SCADA[0-999]")  # several Read Tag Fragmented replies
            assert len(big) == 1000 and big[:4] == [1, 2, 3, 4]
            name = await c.get_attribute_single("@1/1/7")
            assert bytes(name[1:]).decode() == "Device 0"
            with pytest.raises(ENIPStatusError, match="Path segment error"):
                await c.read("NOPE")
            with pytest.raises(ENIPStatusError):
                await c.write("SCADA[0]", [1], tag_type="DINT")
            assert await c.read("SCADA[0]") == 1   # the session survives error replies
    asyncio.run(go())


def test_aclient_errors_timeouts() -> None:
    async def go() -> None:
        with pytest.raises(ENIPConnectionError, match="refused"):
            async with AsyncClient("127.0.0.1", free_port(), timeout=1.0):
                pass
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        async with silent:
            with pytest.raises(TimeoutError, match="Register Session: no response") as err:
                async with AsyncClient("127.0.0.1", port, timeout=0.3):
                    pass
            assert isinstance(err.value, ENIPError)
    asyncio.run(go())


def test_aclient_connects_and_identifies_in_one_segment(ours) -> None:
    """``connect(identify=True)`` (a poller's first contact) sends Register Session and List
    Identity together: the session and the identity, as if asked one after the other; a
    server answering neither times out on the first, and leaves no request waiting."""
    host, port = ours

    async def go() -> None:
        c = AsyncClient(host, port, timeout=2.0)
        await c.connect(identify=True)
        try:
            assert c.session and c.identity == await c.list_identity()
            assert c.identity.product_name == "Device 0" and c.identity["revision.major"] >= 0
            assert await c.read("SCADA[0]") is not None
            assert not c._protocol.waiting
        finally:
            await c.close()
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        async with silent:
            quiet = AsyncClient("127.0.0.1", silent.sockets[0].getsockname()[1], timeout=0.3)
            with pytest.raises(TimeoutError, match="Register Session: no response"):
                await quiet.connect(identify=True)
            assert not quiet.connected and quiet.identity is None
    asyncio.run(go())


def test_aclient_many_devices_concurrently() -> None:
    hosts = [f"127.0.0.{n}" for n in range(2, 12)]
    with serving(hosts) as handles:
        async def one(host: str, port: int) -> str:
            async with AsyncClient(host, port, timeout=2.0) as c:
                await c.read("SCADA[0-9]")
                return (await c.list_identity()).product_name
        async def go() -> list[str]:
            return await asyncio.gather(*(one(h, s.port) for h, s in zip(hosts, handles, strict=True)))
        names = asyncio.run(go())
    assert names == [f"Device {n}" for n in range(10)]


def test_udp_broadcast_gathers_every_responder(capsys) -> None:
    """Three devices on three loopback addresses, one port; the 'broadcast' targets are the
    loopback unicast addresses (tests never send to a real broadcast address)."""
    port = free_port("127.0.0.2")
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with serving(hosts, port=port):
        with client.client(host=hosts[0], port=port, udp=True, broadcast=True) as conn:
            for host in hosts:
                conn.list_identity(address=(host, port))
            names, peers = set(), set()
            for _ in range(10):
                reply, _ = client.await_response(conn, timeout=1.0)
                if not reply:
                    break
                names.add(reply["enip.CIP.list_identity.CPF.item[0].identity_object.product_name"])
                peers.add(reply.peer[0])
        assert names == {"Device 0", "Device 1", "Device 2"} and peers == set(hosts)
        status = client.main(["--udp", "--broadcast", "--list-identity", "-t", "1",
                              "-a", ",".join(f"{h}:{port}" for h in hosts)])
    out = capsys.readouterr().out
    assert status == 0
    for n in range(3):
        assert f"List Identity {n} from ('127.0.0." in out and f'"Device {n}"' in out


def test_spec_examples_against_ours(ours, capsys) -> None:
    host, port = ours
    # spec 2.1.5 io_example
    with client.connector(host=host, port=port, timeout=1.0) as connection:
        operations = client.parse_operations(["Tag[0-9]+16=(DINT)4,5,6,7,8,9", "@0x2/1/1", "Tag[3-5]"])
        failures, transactions = connection.process(operations=operations, depth=1, multiple=0,
                                                    fragment=False, printing=True, timeout=1.0)
    out = capsys.readouterr().out
    assert "Tag[0-9]                 <= [4, 5, 6, 7, 8, 9]: 'OK'" in out
    assert transactions[0] == [4, 5, 6, 7, 8, 9] and transactions[2] == [0, 4, 5]
    assert failures == (transactions[1] is None)
    # spec 2.1.4 Set Attribute Single with a cast, then a Read Tag of the same attribute
    assert client.main(["-a", f"{host}:{port}", "--print", "Motor_Velocity=0.0"]) == 0
    from cpppo.server.enip.get_attribute import main as get_attribute_main
    assert get_attribute_main(["-a", f"{host}:{port}", "@0x93/3/10=(REAL)1.0", "@0x93/3/10"]) == 0
    assert client.main(["-a", f"{host}:{port}", "--print", "Motor_Velocity"]) == 0
    out = capsys.readouterr().out
    assert "Single S_A_S      @0x0093/3/10 == True" in out
    assert "Single G_A_S      @0x0093/3/10 == [0, 0, 128, 63]" in out
    assert "Motor_Velocity           == [1.0]: 'OK'" in out


def test_pipeline_against_a_slow_server() -> None:
    """Replies delayed by 20-40 ms: a pipeline of depth 10 keeps 10 requests in flight."""
    with serving(["127.0.0.1"], delay=(0.02, 0.04)) as handles, \
            client.connector("127.0.0.1", handles[0].port, timeout=5.0) as conn:
        ops = list(client.parse_operations(["SCADA[1]=5", "SCADA[0-2]"] * 20))
        results = list(conn.pipeline(ops, depth=10))
    assert [r[0] for r in results] == list(range(40))
    assert all(r[5] in (True, [0, 5, 0]) for r in results)


def test_thruput_and_list_services_commands(ours, capsys) -> None:
    from cpppo.enip.cli import list_services
    from cpppo.server.enip import thruput
    host, port = ours
    assert thruput.main(["-a", f"{host}:{port}", "-q", "SCADA[1]", "FLOAT", "--repeat", "25", "--depth", "5",
                         "--multiple", "250"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("50 operations using") and "at pipeline depth  5;" in line
    assert line.endswith("TPS")
    requests = int(line.split("using")[1].split("requests")[0])
    assert requests < 50    # bundled into Multiple Service Packets
    assert list_services.main(["-a", f"{host}:{port}", "--udp", "--identity", "-t", "2"]) == 0
    out = capsys.readouterr().out
    assert "List Services 0 from" in out and '"item[0].identity_object.product_name": "Device 0"' in out
    assert list_services.main(["-a", f"127.0.0.1:{free_port()}"]) == 1
    assert "Connection refused" in capsys.readouterr().err
