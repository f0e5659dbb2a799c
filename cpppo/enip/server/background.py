"""Run a device's server on an event loop in a background thread (spec 2.1.3: "start the
service in a separate threading.Thread").  Used by tests and by programs that embed a
simulated controller beside blocking code.

    with serve_in_thread(Device.from_specs(["SCADA=INT[10]"])) as server:
        ...  # connect to ("127.0.0.1", server.port)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from cpppo.enip.device.model import Device
from cpppo.enip.server.transport import ServerHandle, serve

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(device: Device, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0,
                    **kwds: Any) -> Iterator[ServerHandle]:
    """Serve ``device`` from a daemon thread for the duration of the block; ``kwds`` go to
    ``serve`` (udp, delay, settings).  Raises what ``serve`` raised if it could not start."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    result: dict[str, Any] = {}

    async def start() -> None:
        try:
            result["server"] = await serve(device, host, port, **kwds)
        except BaseException as exc:  # reported to the caller below
            result["error"] = exc
        finally:
            started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(start())
        loop.run_forever()
        task.cancel()

    thread = threading.Thread(target=run, name=f"enip-{host}:{port}", daemon=True)
    thread.start()
    if not started.wait(timeout):
        raise TimeoutError(f"server on {host}:{port} did not start in {timeout}s")
    try:
        if "error" in result:
            raise result["error"]
        yield result["server"]
    finally:
        server: ServerHandle | None = result.get("server")

        async def stop() -> None:
            if server is not None:
                server.close()
                await server.wait_closed()

        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
