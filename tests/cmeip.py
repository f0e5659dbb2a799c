"""The third-party ``cm-ethernetip`` package from PyPI (a pure-Python EtherNet/IP scanner and
adapter), in a virtualenv of its own under ``.cache/``, and a peer program run with it.

``cm_python()`` builds the virtualenv once (``tests.upstream.cached_venv``).  This file is
also the peer: run by that interpreter in isolated mode it imports only ``ethernetip`` and
the standard library, and prints one JSON object per line on stdout::

    python -I tests/cmeip.py adapter <host> <tcp port> <udp port> <seconds> [<count>]
        a VirtualDevice with assembly 100 (input, 8 bytes: a DINT counter and 0x12345678),
        150 (output, 4 bytes) and 151 (config, 0 bytes); ``count`` devices on consecutive
        ports; prints {"ready": ...} then {"outputs": hex, "connections": n, "sent": n}
    python -I tests/cmeip.py scanner <host> <tcp port> <seconds> <cycles> <rpi us> <output hex>
        Forward Open to 150/100/151 (4 and 8 bytes) at the RPI, ``cycles`` times (each with a
        Forward Close), printing {"inputs": hex, "received": n} every 0.1 s
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

CM_REQUIREMENT = "cm-ethernetip==0.1.0"
PEER = Path(__file__).resolve()


def cm_python(timeout: float = 600.0) -> Path:
    """The interpreter of the cached cm-ethernetip virtualenv, built if needed."""
    from tests.upstream import cached_venv
    return cached_venv("cm-ethernetip-0.1.0", CM_REQUIREMENT, "import ethernetip.device.virtual_device",
                       timeout)


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def _adapter(host: str, tcp: int, udp: int, seconds: float, count: int = 1) -> None:
    from ethernetip.cip.identity_info import IdentityInfo
    from ethernetip.device.virtual_device import VirtualDevice

    devices = []
    for n in range(count):
        device = VirtualDevice(IdentityInfo(product_name=f"cm adapter {n}"), host)
        device.add_assembly(100, 8, "inputs")
        device.add_assembly(150, 4, "outputs")
        device.add_assembly(151, 0, "config")
        await device.start(tcp_port=tcp + n if tcp else 0, udp_port=udp + n if udp else 0)
        devices.append(device)
    _say(ready=True, tcp=tcp, udp=udp, count=count)
    end = time.monotonic() + seconds
    counter = 0
    next_report = 0.0
    while time.monotonic() < end:
        counter += 1
        for device in devices:
            inputs = device.assemblies.get_assembly(100)
            inputs.write_dint(0, counter)
            inputs.write_dint(4, 0x12345678)
        now = time.monotonic()
        if now >= next_report:
            next_report = now + 0.1
            first = devices[0]
            _say(outputs=first.assemblies.get_assembly(150).get_data().hex(),
                 connections=sum(len(d.connection_manager.active_connections) for d in devices),
                 sent=sum(d.to_send_count for d in devices))
        await asyncio.sleep(0.01)
    for device in devices:
        await device.close()


async def _scanner(host: str, tcp: int, seconds: float, cycles: int, rpi: int, output: bytes) -> None:
    from ethernetip.protocol.eip_scanner import EipScanner
    from ethernetip.protocol.forward_open_config import ForwardOpenConfig

    for cycle in range(cycles):
        scanner = EipScanner()
        await scanner.connect(host, tcp)
        # cm-ethernetip's connection sizes leave out the 2-byte CIP sequence count (see the note in
        # tests/test_enip_io_interop.py); sizes are the application data of each direction.
        config = ForwardOpenConfig(consumed_assembly=150, produced_assembly=100, config_assembly=151,
                                   consumed_size=4, produced_size=8, rpi=rpi, transport_class=1,
                                   timeout_multiplier=2)
        try:
            connection = await scanner.forward_open(config)
        except RuntimeError as exc:
            _say(cycle=cycle, error=str(exc))
            await scanner.close()
            return
        connection.set_consumed_data(output)
        _say(cycle=cycle, opened=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.1)
            _say(cycle=cycle, inputs=connection.produced_data.hex(), received=connection.receive_count,
                 sent=connection.send_count)
        await connection.close()
        await scanner.close()
        _say(cycle=cycle, closed=True)


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "adapter":
        host, tcp, udp, seconds, *count = args
        asyncio.run(_adapter(host, int(tcp), int(udp), float(seconds), int(count[0]) if count else 1))
    elif mode == "scanner":
        host, tcp, seconds, cycles, rpi, output = args
        asyncio.run(_scanner(host, int(tcp), float(seconds), int(cycles), int(rpi), bytes.fromhex(output)))
    else:
        print(f"usage: {sys.argv[0]} adapter|scanner ...", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
