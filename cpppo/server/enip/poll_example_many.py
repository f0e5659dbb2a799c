"""Poll several PowerFlex 750 parameters at different rates from several threads, all through
one proxy (one EtherNet/IP connection) (spec 2.1.7)::

    python -m cpppo.server.enip.poll_example_many [<hostname>[:<port>] [<seconds>]]
"""

from __future__ import annotations

import datetime
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

# (cycle seconds, parameters) per polling thread
SCHEDULE = [(0.5, ["Output Frequency"]), (1.0, ["Output Current", "Motor Velocity"]),
            (2.5, ["Speed Units", "Elapsed Kwh"])]


def timestamp() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(**cpppo.log_cfg)
    host, port = parse_address(args[0] if args else "localhost")
    duration = float(args[1]) if len(args) > 1 else None
    lock = threading.Lock()
    events: list[str] = []

    def failure(exc: BaseException) -> None:
        with lock:
            events.append(f"{timestamp()}: {exc}")

    def process(par: Any, val: Any) -> None:
        with lock:
            events.append(f"{timestamp()}: {par:>16} == {val!r}")
    process.done = False  # type: ignore[attr-defined]

    via = device(host=host, port=port, timeout=0.5)
    pollers = [threading.Thread(target=poll.poll, kwargs={
        "via": via, "cycle": cycle, "process": process, "failure": failure, "params": params})
        for cycle, params in SCHEDULE]
    for poller in pollers:
        poller.start()
    ends = None if duration is None else time.monotonic() + duration
    try:
        while ends is None or time.monotonic() < ends:
            with lock:
                pending, events[:] = list(events), []
            for line in pending:
                print(line, flush=True)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        process.done = True  # type: ignore[attr-defined]
        for poller in pollers:
            poller.join()
        via.close_gateway()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
