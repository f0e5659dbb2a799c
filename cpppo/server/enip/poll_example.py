"""Poll a PowerFlex 750 series drive (spec 2.1.7)::

    python -m cpppo.server.enip.poll_example [<hostname>[:<port>] [<seconds>]]

Prints each polled value and each failure with the time; stop and restart the device to see
the back-off and the recovery.  Runs until interrupted, or for ``<seconds>`` if given.  To
start a simulated PowerFlex on localhost: ``python -m cpppo.server.enip.poll_test``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import cpppo
from cpppo.enip.client.connection import parse_address
from cpppo.server.enip import poll
from cpppo.server.enip.ab import powerflex_750_series as device

PARAMS = ["Motor Velocity", "Output Current"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(**cpppo.log_cfg)
    host, port = parse_address(args[0] if args else "localhost")
    duration = float(args[1]) if len(args) > 1 else None

    def failure(exc: BaseException) -> None:
        failure.string.append(str(exc))  # type: ignore[attr-defined]
    failure.string = []  # type: ignore[attr-defined]

    def process(par: Any, val: Any) -> None:
        process.values[par] = val  # type: ignore[attr-defined]
    process.done = False  # type: ignore[attr-defined]
    process.values = {}  # type: ignore[attr-defined]

    poller = threading.Thread(target=poll.poll, kwargs={
        "proxy_class": device, "address": (host, port), "cycle": 1.0, "timeout": 0.5,
        "process": process, "failure": failure, "params": PARAMS})
    poller.start()
    ends = None if duration is None else time.monotonic() + duration
    try:
        while ends is None or time.monotonic() < ends:
            while process.values:  # type: ignore[attr-defined]
                par, val = process.values.popitem()  # type: ignore[attr-defined]
                print(f"{time.ctime()}: {par:>16} == {val!r}", flush=True)
            while failure.string:  # type: ignore[attr-defined]
                print(f"{time.ctime()}: {failure.string.pop(0)}", flush=True)  # type: ignore[attr-defined]
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        process.done = True  # type: ignore[attr-defined]
        poller.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
