"""``get_attribute`` proxies, ``ab.powerflex_750_series`` and ``poll`` (spec 2.1.6-2.1.7),
against the upstream cpppo server (simulating a PowerFlex's attributes) and ours."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from cpppo.enip.client import poll as poll_engine
from cpppo.server.enip import client, poll
from cpppo.server.enip.ab import powerflex_750_series
from cpppo.server.enip.get_attribute import attribute_operations, proxy, proxy_simple
from tests.support import free_port, python_module, running
from tests.test_enip_client_ours import serving

POWERFLEX = ["Output_Frequency@0x93/1/10=REAL", "Motor_Velocity@0x93/3/10=REAL",
             "Output_Current@0x93/7/10=REAL", "Elapsed_KwH@0x93/14/10=REAL", "Speed_Units@0x93/300/10=DINT",
             "SCADA=INT[10]"]


class some_sensor(proxy_simple):  # noqa: N801 - as the spec names it
    PARAMETERS = dict(proxy_simple.PARAMETERS,
                      a_sensor_parameter=proxy_simple.parameter("@0x93/1/10", "REAL", "Hz"))


@pytest.fixture(scope="module")
def powerflex(upstream_python):
    port = free_port()
    argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", *POWERFLEX, python=upstream_python)
    with running(argv, listen=("127.0.0.1", port)):
        via = powerflex_750_series(host="127.0.0.1", port=port, timeout=5.0)
        with via:
            assert list(via.write(via.parameter_substitution(
                ["Motor Velocity = 789.01", "Output Current=(REAL)123.45", "Speed Units=1",
                 "Output Frequency=456.78", "Elapsed KwH=987.65"]), checking=True)) == [True] * 5
        via.close_gateway()
        yield "127.0.0.1", port


def test_attribute_operations() -> None:
    ops = list(attribute_operations(["@1/1", "@1/1/7", "@0x93/3/10=(REAL)1.0", "@1/1/7=1,2", "Tag"]))
    assert [op["method"] for op in ops] == [
        "get_attributes_all", "get_attribute_single", "set_attribute_single", "set_attribute_single", "read"]
    assert ops[2]["tag_type"] == 0xCA and ops[3]["tag_type"] == 0xC6


def test_parameter_substitution_names() -> None:
    via = powerflex_750_series(host="localhost")
    assert via.parameter_substitution("Motor Velocity") == [("@0x93/3/10", "REAL", "Hz/RPM")]
    assert via.parameter_substitution(["  motor   VELOCITY = 1.5", "SCADA[1]"]) == [
        ("@0x93/3/10=(REAL)1.5", "REAL", "Hz/RPM"), ("SCADA[1]", None, None)]
    with pytest.raises(KeyError, match="Nope"):
        via.parameter_substitution("Nope", pass_thru=False)
    assert some_sensor(host="x").parameter_substitution("A Sensor Parameter")[0][0] == "@0x93/1/10"


@pytest.mark.interop
def test_proxy_identity_str_and_read(powerflex) -> None:
    host, port = powerflex
    via = some_sensor(host=host, port=port, timeout=5.0)
    assert str(via) == "None at None"
    reader = via.read(via.parameter_substitution("A Sensor Parameter"))
    assert re.fullmatch(rf"1756-L61/B LOGIX5561 at {host}:{port}\[\d+\]", str(via))
    with via:
        (value,) = reader
    assert value == [pytest.approx(456.78, abs=1e-4)]
    named = proxy(host=host, port=port, timeout=5.0, identity_default="Something", route_path=False,
                  send_path="")
    assert str(named) == "Something at None"
    with named:
        (name,) = named.read(named.parameter_substitution("Product Name"))
        assert name == ["1756-L61/B LOGIX5561"]
        assert str(named).startswith(f"Something at {host}:{port}[")
        values = list(named.read([("@1/1/1", "INT"), ("@1/1", named.PARAMETERS["identity"].types)]))
        assert values[0] == [1] and values[1][6] == "1756-L61/B LOGIX5561"


def test_proxy_errors_checking_and_gateway() -> None:
    """(Against our server: upstream's drops the connection on an unknown attribute.)"""
    with serving(["127.0.0.1"], specs=POWERFLEX) as handles:
        _errors_checking_and_gateway("127.0.0.1", handles[0].port)


def _errors_checking_and_gateway(host: str, port: int) -> None:
    via = powerflex_750_series(host=host, port=port, timeout=5.0)
    with via:
        assert list(via.write(via.parameter_substitution("Speed Units=1"))) == [True]
        assert list(via.read(["@0x93/99/10"])) == [None]          # error status: None
        with pytest.raises(client.ENIPStatusError, match="@0x93/99/10"):
            list(via.read(["@0x93/99/10"], checking=True))
    assert via.gateway is None                                     # closed on the exception
    assert list(via.read(via.parameter_substitution("Speed Units"), checking=True)) == [[1]]
    dead = powerflex_750_series(host="127.0.0.1", port=free_port(), timeout=1.0)
    with pytest.raises(client.ENIPConnectionError, match="Connection refused"):
        dead.read("Motor Velocity")
    assert dead.gateway is None and str(dead) == "None at None"


@pytest.mark.interop
def test_powerflex_write_cli_style(powerflex) -> None:
    host, port = powerflex
    via = powerflex_750_series(host=host, port=port, timeout=5.0)
    with via:
        (val,) = via.write(via.parameter_substitution("Motor Velocity = (REAL)123.45"), checking=True)
        assert val is True
        (val,) = via.read(via.parameter_substitution("Motor Velocity"))
        assert val == [pytest.approx(123.45, abs=1e-4)]
        assert list(via.write(via.parameter_substitution("Motor Velocity = 789.01"), checking=True)) == [True]


@pytest.mark.interop
@pytest.mark.slow
def test_poll_example_prints_values(powerflex) -> None:
    host, port = powerflex
    out = subprocess.run([sys.executable, "-m", "cpppo.server.enip.poll_example", f"{host}:{port}", "1.6"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(r": +Motor Velocity == \[789\.01\d*\]", out.stdout)
    assert re.search(r": +Output Current == \[123\.44\d*\]", out.stdout)
    many = subprocess.run([sys.executable, "-m", "cpppo.server.enip.poll_example_many", f"{host}:{port}",
                           "1.6"],
                          capture_output=True, text=True, timeout=60)
    assert many.returncode == 0, many.stderr
    for name in ("Output Frequency", "Motor Velocity", "Speed Units", "Elapsed Kwh"):
        assert f"{name} == [" in many.stdout


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_poll_backs_off_and_recovers() -> None:
    """Device absent -> failures with growing gaps; present -> values; gone -> failure;
    back -> values again (the spec's poll_example story, against our server)."""
    port = free_port()
    failures: list[tuple[float, str]] = []
    values: list[tuple[float, str, object]] = []

    def failure(exc: BaseException) -> None:
        failures.append((time.monotonic(), str(exc)))

    def process(par: str, val: object) -> None:
        values.append((time.monotonic(), par, val))
    process.done = False  # type: ignore[attr-defined]

    poller = threading.Thread(target=poll.poll, kwargs=dict(
        proxy_class=powerflex_750_series, address=("127.0.0.1", port), cycle=0.2, timeout=0.5,
        process=process, failure=failure, params=["Motor Velocity", "Output Current"],
        backoff_min=0.05, backoff_multiplier=2.0, backoff_max=0.4, latency=0.05))
    poller.start()
    try:
        assert _wait(lambda: len(failures) >= 3, 10)
        assert "Connection refused" in failures[0][1]
        with serving(["127.0.0.1"], port=port, specs=POWERFLEX):
            assert _wait(lambda: len(values) >= 4, 10)
        assert {par for _, par, _ in values} == {"Motor Velocity", "Output Current"}
        assert values[0][2] == [0.0]
        seen = len(failures)
        assert _wait(lambda: len(failures) > seen, 10)
        count = len(values)
        with serving(["127.0.0.1"], port=port, specs=POWERFLEX):
            assert _wait(lambda: len(values) >= count + 2, 10)
    finally:
        process.done = True  # type: ignore[attr-defined]
        poller.join(10)
    assert not poller.is_alive()


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class _FlakyProxy:
    """Fails ``failures`` polls, then answers; closes its gateway when told."""

    def __init__(self, failures: int) -> None:
        self.failures, self.polls, self.closed = failures, [], 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def parameter_substitution(self, params, pass_thru=None):
        return params

    def read(self, params, checking=False):
        self.polls.append(clock.now)
        if len(self.polls) <= self.failures:
            raise client.ENIPTimeout("Failed to receive any response")
        return iter([[1.0] for _ in params])

    def close_gateway(self, exc=None):
        self.closed += 1


clock = _FakeClock()


def test_poll_exponential_backoff_is_deterministic(monkeypatch) -> None:
    monkeypatch.setattr(poll_engine, "time", clock)
    via = _FlakyProxy(failures=6)
    seen: list = []

    def process(par, val):
        seen.append((clock.now, par, val))
        if len(seen) >= 4:
            process.done = True
    process.done = False
    errors: list[str] = []
    poll.run(via=via, process=process, failure=lambda exc: errors.append(str(exc)), cycle=1.0,
             backoff_min=0.5, backoff_multiplier=2.0, backoff_max=4.0, latency=10.0, params=["A", "B"])
    gaps = [b - a for a, b in zip(via.polls, via.polls[1:], strict=False)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 1.0]   # back-off, capped; then the cycle
    assert errors == ["Failed to receive any response"] * 6 and via.closed == 6
    assert [(p, v) for _, p, v in seen] == [("A", [1.0]), ("B", [1.0])] * 2


def test_a_short_typed_reply_names_the_missing_field():
    from cpppo.enip.client.proxy import _decode_typed

    assert _decode_typed([1, 0, 2, 0], ["INT", "INT"]) == [1, 2]
    with pytest.raises(ValueError, match=r"reply of 3 bytes ends before its INT at offset 2"):
        _decode_typed([1, 0, 2], ["INT", "INT"])


def test_typed_replies_decode_strings_with_the_codec():
    from cpppo.enip.client.proxy import _decode_typed

    raw = list(b"\x03\x00abc" + b"\x02xy" + b"\x05\x00")
    assert _decode_typed(raw, ["STRING", "SSTRING", "INT"]) == ["abc", "xy", 5]
    assert _decode_typed(list(b"\x00\x00\x00"), ["STRING", "SSTRING"]) == ["", ""]
    with pytest.raises(ValueError, match=r"reply of 4 bytes ends within its STRING at offset 0"):
        _decode_typed(list(b"\x05\x00ab"), ["STRING"])
    with pytest.raises(ValueError, match=r"reply of 3 bytes ends within its SSTRING at offset 3"):
        _decode_typed(list(b"\x01\x00a"), ["STRING", "SSTRING"])
