"""Structures at scale: a controller of N tags from a Logix export, half of them structures
(a Motor UDT), against a controller of N plain DINT tags, in the same run.

Measures start-up (parse the export and build the device), memory per device (tracemalloc
of one build), pycomm3's full tag-list and template upload (LogixDriver(init_tags=True)),
and pycomm3 read rates: a whole structure, one member, a plain DINT.

    python benchmarks/bench_udt.py [--tags 5000] [--reads 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from cpppo.enip.device.l5x import load_export
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread

MOTOR = ('<DataType Name="Motor" Family="NoFamily" Class="User"><Members>'
         '<Member Name="ZZZZZZZZZZMotor0" DataType="SINT" Dimension="0" Hidden="true"/>'
         '<Member Name="Running" DataType="BIT" Dimension="0" Target="ZZZZZZZZZZMotor0" BitNumber="0"/>'
         '<Member Name="Speed" DataType="REAL" Dimension="0"/>'
         '<Member Name="Faults" DataType="DINT" Dimension="4"/>'
         '<Member Name="Name" DataType="STRING" Dimension="0"/></Members></DataType>')


def export(path: Path, count: int, structs: bool) -> Path:
    tags = []
    for i in range(count):
        kind = "Motor" if structs and i % 2 == 0 else "DINT"
        tags.append(f'<Tag Name="T{i}" TagType="Base" DataType="{kind}"/>')
    path.write_text('<?xml version="1.0"?><RSLogix5000Content SchemaRevision="1.0"><Controller Name="C">'
                    f'<DataTypes>{MOTOR if structs else ""}</DataTypes><Tags>{"".join(tags)}</Tags>'
                    '</Controller></RSLogix5000Content>')
    return path


def measure(path: Path, reads: int, structs: bool) -> dict[str, float]:
    from pycomm3 import LogixDriver

    started = time.perf_counter()
    device = Device.from_specs([], export=load_export(path), identity={"revision": (32, 11)})
    startup = time.perf_counter() - started
    tracemalloc.start()
    kept = Device.from_specs([], export=load_export(path))
    memory = tracemalloc.get_traced_memory()[0]  # while ``kept`` lives
    del kept
    tracemalloc.stop()
    out = {"startup_s": startup, "memory_mb": memory / 2**20}
    with serve_in_thread(device) as srv:
        started = time.perf_counter()
        with LogixDriver(f"127.0.0.1:{srv.port}") as plc:
            out["tag_upload_s"] = time.perf_counter() - started
            assert len(plc.tags) == len(device.tags)
            names = {"plain": "T1"} | ({"struct": "T0", "member": "T0.Speed"} if structs else {})
            for what, name in names.items():
                started = time.perf_counter()
                for _ in range(reads):
                    assert plc.read(name).error is None
                out[f"{what}_reads_per_s"] = reads / (time.perf_counter() - started)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", type=int, default=5000)
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        udt = measure(export(Path(tmp) / "udt.L5X", args.tags, True), args.reads, True)
        plain = measure(export(Path(tmp) / "plain.L5X", args.tags, False), args.reads, False)
    for key in udt:
        peer = plain.get(key)
        ratio = f"{udt[key] / peer:.2f}x" if peer else "-"
        print(f"{key:<22} half structures: {udt[key]:10.3f}   plain tags: "
              f"{peer if peer is not None else float('nan'):10.3f}   ratio {ratio}")
    base = udt["plain_reads_per_s"]
    print(f"struct read / plain read (same device): {udt['struct_reads_per_s'] / base:.2f}x; "
          f"member / plain: {udt['member_reads_per_s'] / base:.2f}x")


if __name__ == "__main__":
    main()
