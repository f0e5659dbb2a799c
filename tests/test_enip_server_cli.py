"""`enip_server` command line, cpppo.cfg, the Attribute customisation hook, historize and
poll_test (each started as a real process on an ephemeral loopback port)."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading

import pytest

from cpppo.enip.cli.server import parse_address, parse_delay
from cpppo.enip.codec import cip
from cpppo.enip.device import config as enip_config
from cpppo.enip.device.model import Attribute, Device
from cpppo.enip.server.background import serve_in_thread
from cpppo.history import read_history
from tests.support import free_port, python_module, running
from tests.test_enip_server import Wire, attribute, read, write

CFG = """\
[Identity]
# strings are not quoted
Product Name          = 1756-L61/C LOGIX5561
Serial Number         = 0x00ABCDEF
[TCPIP]
Interface Configuration = {
    "ip_address":      "192.168.0.201",
    "network_mask":    "255.255.255.0",
    "dns_primary":     "8.8.8.8",
    "dns_secondary":   "8.8.4.4",
    "domain_name":     "example.com"
    }
Host Name              = controller
"""


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(python_module("cpppo.server.enip", *args), capture_output=True, text=True,
                          timeout=30, cwd=cwd)


@pytest.mark.parametrize(("args", "names"), [
    (["--bogus", "X=INT"], "--bogus"),
    (["X=INTEGER"], "INTEGER"),
    (["X@1/2=INT"], "X@1/2=INT"),
    (["-a", "host:port", "X=INT"], "port"),
    (["-d", "fast", "X=INT"], "--delay"),
    (["--route-path", "1/banana", "X=INT"], "banana"),
    ([], "TAG"),
])
def test_bad_arguments_exit_with_one_line(args, names):
    result = run_cli(*args)
    assert result.returncode != 0 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and names in result.stderr, result.stderr


def test_bad_config_value_names_file_and_key(tmp_path):
    (tmp_path / "cpppo.cfg").write_text("[Identity]\nSerial Number = lots\n")
    result = run_cli("X=INT", cwd=tmp_path)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "cpppo.cfg" in result.stderr and "serial" in result.stderr.lower()
    (tmp_path / "cpppo.cfg").write_text("[Identity]\nColour = red\n")
    result = run_cli("X=INT", cwd=tmp_path)
    assert result.returncode != 0 and "[Identity] Colour" in result.stderr


def test_parse_helpers():
    assert parse_address(":44818") == ("", 44818) and parse_address("127.0.0.2") == ("127.0.0.2", 44818)
    assert parse_address("localhost:0") == ("localhost", 0)
    assert parse_delay("0.5") == 0.5 and parse_delay("0.1-0.25") == (0.1, 0.25) and parse_delay(None) is None
    with pytest.raises(ValueError):
        parse_delay("0.5-0.1")


def test_config_file_sets_identity_and_tcpip(tmp_path):
    (tmp_path / "cpppo.cfg").write_text(CFG)
    loaded = enip_config.load(defaults=[tmp_path / "cpppo.cfg"])
    assert loaded.identity == {"product_name": "1756-L61/C LOGIX5561", "serial_number": 0xABCDEF}
    assert loaded.tcpip["ip_address"] == "192.168.0.201" and loaded.tcpip["host_name"] == "controller"
    port = free_port()
    argv = python_module("cpppo.server.enip", "-v", "-a", f"127.0.0.1:{port}", "SCADA=INT[10]")
    with running(argv, listen=("127.0.0.1", port), cwd=tmp_path) as proc:
        wire = Wire(port)
        try:
            assert wire.routed(attribute(1, 1, 7)).data == b"\x141756-L61/C LOGIX5561"
            config = wire.routed(attribute(0xF5, 1, 5)).data
            ip, mask, gateway, dns1, dns2, size = struct.unpack_from("<5IH", config)
            assert (ip, mask, gateway, dns1, dns2) == (0xC0A800C9, 0xFFFFFF00, 0, 0x08080808, 0x08080404)
            assert config[22:22 + size] == b"example.com"
            assert wire.routed(attribute(0xF5, 1, 6)).data == b"\x0a\x00controller"
        finally:
            wire.close()
        proc.terminate()
        assert proc.wait(10) == 0
        assert "Loaded config files" in proc.stdout.read()


class Doubling(Attribute):
    """Reads see twice the stored value; writes are counted (from many threads)."""

    writes = 0

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return [v * 2 for v in value] if isinstance(key, slice) else value * 2

    def __setitem__(self, key, value):
        with self._lock:
            type(self).writes += 1
        super().__setitem__(key, value)


def test_custom_attribute_class_sees_every_access():
    device = Device.from_specs(["X=DINT[4]"], attribute_class=Doubling)
    assert type(device.objects[(1, 1)][7]) is Attribute  # standard objects stay plain
    with serve_in_thread(device, udp=False) as srv:
        def writer(n: int) -> None:
            wire = Wire(srv.port)
            for _ in range(25):
                assert wire.routed(write("X", n, 0xC4, 1, struct.pack("<i", n + 1))).status == 0
            wire.close()
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        wire = Wire(srv.port)
        assert wire.routed(read("X", 0, 4)).data[2:] == struct.pack("<4i", 2, 4, 6, 8)
        wire.close()
    assert Doubling.writes == 100


def test_historize_records_reads_writes_and_errors(tmp_path):
    history = tmp_path / "some_file.hst"
    port = free_port()
    argv = python_module("cpppo.server.enip.historize", str(history), "-a", f"127.0.0.1:{port}",
                         "Tag_Name=INT[1000]")
    with running(argv, listen=("127.0.0.1", port)) as proc:
        wire = Wire(port)
        try:
            assert wire.routed(write("Tag_Name", 0, 0xC3, 4, struct.pack("<4h", 0, 1, 2, 3))).status == 0
            assert wire.routed(read("Tag_Name", 1, 2)).status == 0
            assert wire.routed(read("Tag_Name", 999, 5)).status == 0xFF
        finally:
            wire.close()
        proc.terminate()
        proc.wait(10)
    text = history.read_text()
    assert "# Started recording Tag: Tag_Name" in text
    records = [(name, value) for _, name, value in read_history(history)]
    assert records[:2] == [(["Tag_Name", [0, 3]], {"write": [0, 1, 2, 3]}),
                           (["Tag_Name", [1, 2]], {"read": [1, 2]})]


def test_historize_needs_a_file():
    result = subprocess.run(python_module("cpppo.server.enip.historize"), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "usage" in result.stderr


def test_poll_test_powerflex():
    port = free_port()
    with running(python_module("cpppo.server.enip.poll_test", "-a", f"127.0.0.1:{port}"),
                 listen=("127.0.0.1", port)):
        wire = Wire(port)
        try:
            assert wire.rr(attribute(0x93, 3, 10).encode()).data == struct.pack("<f", 789.01)
            assert wire.rr(attribute(0x93, 7, 9).encode()).data == struct.pack("<f", 123.45)
            assert wire.rr(attribute(0x93, 300, 10).encode()).data == struct.pack("<i", 1)
            new = attribute(0x93, 3, 10, cip.Service.SET_ATTRIBUTE_SINGLE, struct.pack("<f", 1.0))
            assert wire.rr(new.encode()).status == 0
            assert wire.rr(attribute(0x93, 3, 9).encode()).data == struct.pack("<f", 1.0)
            assert wire.rr(attribute(1, 1, 7).encode()).data == b"\x0dPowerFlex 753"
            assert wire.routed(attribute(0x93, 3, 10)).status == 0x01  # a simple device: no routing
        finally:
            wire.close()


def test_cli_help_and_module_entry():
    result = subprocess.run([sys.executable, "-m", "cpppo.server.enip", "--help"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and "--route-path" in result.stdout and "--simple" in result.stdout


def test_spec_weather_style_attribute():
    """The spec 2.1.3 example's shape: read-only values computed per read, typed by parser."""
    from cpppo.server.enip import REAL
    class Weather(Attribute):
        def __getitem__(self, key):
            temperature = (float if isinstance(self.parser, REAL) else int)(21.5)
            return [temperature] if self._validate_key(key) is slice else temperature

        def __setitem__(self, key, value):
            raise Exception("Changing the weather isn't that easy...")

    device = Device.from_specs(["Calgary=REAL", "Edmonton=DINT"], attribute_class=Weather)
    with serve_in_thread(device, udp=False) as srv:
        wire = Wire(srv.port)
        try:
            assert wire.routed(read("Calgary")).data == struct.pack("<Hf", 0xCA, 21.5)
            assert wire.routed(read("Edmonton")).data == struct.pack("<Hi", 0xC4, 21)
            assert wire.routed(write("Calgary", None, 0xCA, 1, struct.pack("<f", 30.0))).status == 0xFF
        finally:
            wire.close()


def test_print_and_delay_flags():
    port = free_port()
    argv = python_module("cpppo.server.enip", "--print", "-d", "0.01-0.02", "-a", f"127.0.0.1:{port}",
                         "SCADA=INT[10]")
    with running(argv, listen=("127.0.0.1", port)) as proc:
        wire = Wire(port)
        try:
            assert wire.routed(write("SCADA", 1, 0xC3, 2, struct.pack("<2h", 5, 6))).status == 0
            assert wire.routed(read("SCADA", 0, 3)).data == struct.pack("<H3h", 0xC3, 0, 5, 6)
        finally:
            wire.close()
        proc.terminate()
        proc.wait(10)
        printed = proc.stdout.read()
    assert "SCADA                    [1-2]        <= [5, 6]" in printed
    assert "SCADA                    [0-2]        == [0, 5, 6]" in printed
