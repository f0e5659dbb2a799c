"""The fleet's /metrics render (issue 16): CPU of one render of a synthetic view of --n devices
(no fleet, no network; every device fed a few poll latencies), ours (the per-device text written
straight from the view, :meth:`fleet.metrics.FleetCollector.render`) beside prometheus-client's
``generate_latest`` of the same families as family objects (tests/web_support.py, what the poller
did before), in the same run; and the body's size, gzipped size and samples.

    python benchmarks/bench_metrics.py [--n 10000] [--renders 3]
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.metrics import FleetCollector, Latencies  # noqa: E402
from tests.test_web_fleet import synthetic_view  # noqa: E402
from tests.web_support import client_exposition  # noqa: E402


def cpu(render, renders: int) -> tuple[float, bytes]:  # type: ignore[no-untyped-def]
    """The least CPU (s) of ``renders`` renders, and the body."""
    best, body = float("inf"), b""
    for _ in range(renders):
        begun = time.process_time()
        body = render()
        best = min(best, time.process_time() - begun)
    return best, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="devices (default 10,000)")
    parser.add_argument("--renders", type=int, default=3, help="renders timed, the least CPU kept")
    args = parser.parse_args()
    view, _expected = synthetic_view(args.n)
    view.histogram = Latencies()
    rng = random.Random(16)
    for name in view.last:
        for _ in range(5):
            view.histogram.observe(name, rng.uniform(0.0005, 0.05))
    collector = FleetCollector(view)
    collector.set_workers({f"w{k:03}": None for k in range(max(1, args.n // 1000))})
    ours, body = cpu(collector.render, args.renders)
    theirs, _ = cpu(lambda: client_exposition(view, collector), args.renders)
    begun = time.process_time()
    packed = gzip.compress(body, 1)
    zipping = time.process_time() - begun
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    print(f"devices {args.n:,}: samples {samples:,} ({samples / args.n:.1f} a device), "
          f"body {len(body) / 1e6:.2f} MB, gzipped {len(packed) / 1e6:.2f} MB ({zipping:.3f} s CPU)")
    print(f"render CPU: ours {ours:.3f} s, prometheus-client families {theirs:.3f} s, "
          f"ratio {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
