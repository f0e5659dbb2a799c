"""Our implicit I/O packets as Wireshark sees them: Debian's ``tshark`` captures a Forward
Open and the Class 1 exchange on loopback and must decode the UDP packets as CIP I/O, with
the O->T run/idle header and the data of each direction.  Capturing needs root (CI is)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time

import pytest

from tests.enip_io_support import ASSEMBLIES, TAGS, adapter, io_host, scan

pytestmark = pytest.mark.interop


@pytest.fixture
def tshark():
    path = shutil.which("tshark")
    if path is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            raise AssertionError("CI must have tshark and root (see .ci/run)")
        pytest.skip("needs tshark and root to capture on loopback")
    return path


def test_tshark_decodes_cip_io(tshark, tmp_path):
    host, local = io_host(), io_host()
    capture = tmp_path / "io.pcapng"
    proc = subprocess.Popen([tshark, "-i", "lo", "-f", f"host {host} and (udp port 2222 or tcp port 44818)",
                             "-w", str(capture), "-a", "duration:60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        for line in proc.stderr:  # "Capturing on 'Loopback: lo'" once dumpcap listens
            if "Capturing on" in line or time.monotonic() > end:
                break
        time.sleep(0.5)
        with adapter(TAGS, ASSEMBLIES, host) as ours:
            ours.call(lambda: ours.device.tag("Inputs").attribute.__setitem__(slice(0, 2), [0x01020304, 5]))
            scan(host, local, count=10, io_port=2222)
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    fields = subprocess.run([tshark, "-r", str(capture), "-Y", "cipio", "-T", "fields", "-E", "separator=|",
                             "-e", "udp.dstport", "-e", "enip.cpf.sai.connid", "-e", "cip.seq",
                             "-e", "cip.32bitheader.run_idle", "-e", "cipio.data"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    rows = [line.split("|") for line in fields if line]
    o_t = [r for r in rows if r[3]]  # the O->T ones carry the 32-bit header
    t_o = [r for r in rows if not r[3]]
    assert len(o_t) >= 5 and len(t_o) >= 5, rows
    assert {int(r[3], 0) for r in o_t} == {1}  # run
    assert {r[4] for r in o_t} == {struct.pack("<hh", 12, -13).hex()}
    assert struct.pack("<iih", 0x01020304, 5, 0).hex() in {r[4] for r in t_o}
    assert {r[0] for r in rows} == {"2222"}
