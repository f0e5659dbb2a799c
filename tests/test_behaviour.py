"""cpppo.behaviour on a fake clock: the shapes, typing, linked values, playback, the grammar
and its errors, freeze, and the ENIP model and Modbus device producing values when read."""

from __future__ import annotations

import json
import math

import pytest

from cpppo.behaviour import FakeClock, Journal, Plant, ValueType, build_driver, parse_behaviour
from cpppo.enip.device.model import Device, parse_tag_spec
from cpppo.history.files import HistoryWriter
from cpppo.modbus.address import RegisterType
from cpppo.modbus.device import ModbusDevice

REAL = ValueType("REAL", "float", -3.4e38, 3.4e38)
INT = ValueType("INT", "int", -32768, 32767)
BOOL = ValueType("BOOL", "bool", 0, 1)
TEXT = ValueType("STRING", "str", capacity=82)
REGISTER_F32_LO = RegisterType("float32", "f", 2, low_first=True)


@pytest.fixture
def plant():
    return Plant(FakeClock(wall=0.0))


def samples(plant, driver, step, count):
    out = []
    for _ in range(count):
        out.append(driver.values()[0])
        plant.clock.advance(step)
    return out


def test_sine_stays_within_its_amplitude_at_its_period(plant):
    sine = build_driver("sine(amplitude=10, period=8, offset=50)", plant, REAL)
    values = samples(plant, sine, 1.0, 17)
    assert values[0] == pytest.approx(50) and values[2] == pytest.approx(60)
    assert values[6] == pytest.approx(40)
    assert values[:8] == pytest.approx(values[8:16])
    assert all(40 - 1e-9 <= v <= 60 + 1e-9 for v in values)


def test_phase_patterned_on_n_moves_devices_apart(plant):
    a = build_driver("sine(amplitude=1, period=4, phase=n/4)", plant, REAL, n=0)
    b = build_driver("sine(amplitude=1, period=4, phase=n/4)", plant, REAL, n=1)
    assert a.values()[0] == pytest.approx(0) and b.values()[0] == pytest.approx(1)


def test_ramp_triangle_square_steps(plant):
    ramp = build_driver("ramp(amplitude=100, period=10)", plant, INT)
    tri = build_driver("triangle(amplitude=10, period=10)", plant, INT)
    square = build_driver("toggle(period=4)", plant, BOOL)
    steps = build_driver("steps(['IDLE', 'RUN', 'STOP'], dwell=2)", plant, TEXT)
    curve = build_driver("steps([0, 10], dwell=10, smooth=1)", plant, REAL)
    seen = []
    for _ in range(6):
        seen.append(tuple(d.values()[0] for d in (ramp, tri, square, steps, curve)))
        plant.clock.advance(2)
    assert [s[0] for s in seen] == [0, 20, 40, 60, 80, 0]
    assert [s[1] for s in seen] == [0, 4, 8, 8, 4, 0]
    assert [s[2] for s in seen] == [True, False, True, False, True, False]
    assert [s[3] for s in seen] == ["IDLE", "RUN", "STOP", "IDLE", "RUN", "STOP"]
    assert [s[4] for s in seen] == pytest.approx([0, 2, 4, 6, 8, 10])


def test_counter_rises_and_wraps_at_its_bound_or_its_type(plant):
    bounded = build_driver("counter(rate=3, high=9)", plant, INT)
    typed = build_driver("counter(rate=10000, start=30000)", plant, INT)
    assert samples(plant, bounded, 1, 5) == [0, 3, 6, 9, 2]
    plant.clock.set(0)
    assert samples(plant, typed, 1, 2) == [30000, -25536]


def test_integers_clamp_and_bools_toggle(plant):
    walk = build_driver("walk(step=40000, low=-1e9, high=1e9, seed=1)", plant, REAL)
    clamped = build_driver("expr(t * 100000)", plant, INT)
    plant.clock.advance(5)
    assert clamped.values() == [32767]
    assert walk.values()[0] != 0


def test_walk_is_bounded_repeatable_and_lazy(plant):
    one = build_driver("walk(step=5, low=0, high=10, seed=7)", plant, REAL)
    two = build_driver("walk(step=5, low=0, high=10, seed=7)", plant, REAL)
    values = samples(plant, one, 1, 50)
    plant.clock.set(0)
    assert samples(plant, two, 1, 50) == values
    assert all(0 <= v <= 10 for v in values) and len(set(values)) > 10
    plant.clock.advance(1e7)  # a long idle catches up in a bounded number of steps
    assert 0 <= one.values()[0] <= 10


def test_noise_spikes_and_update(plant):
    noisy = build_driver("sine(amplitude=0, period=10, offset=100, noise=1, seed=3)", plant, REAL)
    values = samples(plant, noisy, 0.1, 200)
    mean = sum(values) / len(values)
    assert abs(mean - 100) < 0.5 and 0.5 < max(values) - 100 < 5
    spiky = build_driver("ramp(amplitude=0, offset=10, spike=-10, spike_rate=0.5, seed=2)", plant, REAL)
    seen = set(samples(plant, spiky, 1, 100))
    assert seen == {10.0, 0.0}  # dips
    held = build_driver("walk(step=1, seed=1, update=5)", plant, REAL)
    first = held.values()[0]
    plant.clock.advance(1)
    assert held.values()[0] == first


def test_timestamp_and_uptime(plant):
    plant.clock.advance(90)
    assert build_driver("uptime()", plant, INT).values() == [90]
    assert build_driver("timestamp", plant, ValueType("LINT", "int", -2**63, 2**63 - 1)).values() == [90]
    assert build_driver("timestamp()", plant, TEXT).values() == ["1970-01-01T00:01:30.000+00:00"]


def test_elements_patterned_on_i(plant):
    counts = build_driver("counter(rate=i + 1)", plant, INT, length=4)
    plant.clock.advance(2)
    assert counts.values() == [2, 4, 6, 8]
    assert counts.values(1, 3) == [4, 6]


def test_lag_converges_to_a_setpoint_and_follows_a_new_one(plant):
    values = {"SP": 100.0}
    plant.resolve = values.__getitem__
    lag = build_driver("lag(SP, tau=2)", plant, REAL, known={"SP"})
    assert samples(plant, lag, 2, 2) == [0.0, pytest.approx(100 * (1 - math.exp(-1)))]
    plant.clock.advance(30)
    assert lag.values()[0] == pytest.approx(100, abs=1e-3)
    values["SP"] = 50.0
    plant.clock.advance(2)
    assert lag.values()[0] == pytest.approx(50 + 50 * math.exp(-1))


def test_integral_is_clamped(plant):
    values = {"Inflow": 3.0, "Outflow": 1.0}
    plant.resolve = values.__getitem__
    level = build_driver("integral(Inflow - Outflow, low=0, high=10)", plant, REAL, known=set(values))
    assert samples(plant, level, 2, 4) == [0, 4, 8, 10]
    values["Inflow"] = 0.0
    plant.clock.advance(100)
    assert level.values() == [0]


def write_csv(tmp_path, rows):
    path = tmp_path / "series.csv"
    path.write_text("time,value\n" + "".join(f"{t},{v}\n" for t, v in rows))
    return path


def test_playback_of_a_csv_interpolated_looped_and_sped_up(plant, tmp_path):
    path = write_csv(tmp_path, [(0, 0), (10, 100), (20, 50)])
    played = build_driver(f"playback({str(path)!r})", plant, REAL)
    assert samples(plant, played, 5, 6) == pytest.approx([0, 50, 100, 75, 50, 50])  # loops every 20 s
    fast = build_driver(f"playback({str(path)!r}, speed=10, interpolate=false, loop=false)", plant, REAL)
    plant.clock.set(1.5)
    assert fast.values() == [100]
    plant.clock.set(100)
    assert fast.values() == [50]


def test_playback_of_what_historize_records(plant, tmp_path):
    path = tmp_path / "recorded.hst"
    with HistoryWriter(path) as writer:
        for k in range(5):
            writer.write(1_700_000_000 + k, ["Level", [0, 1]], {"read": [k * 10, -k]})
            writer.write(1_700_000_000 + k, ["Other", [0, 0]], {"write": [999]})
    level = build_driver(f"playback({str(path)!r}, name='Level', element=1)", plant, INT)
    plant.clock.set(2.5)
    assert level.values() == [-2]  # -2.5 rounded to even


@pytest.mark.parametrize("text, message", [
    ("bogus(1)", "unknown behaviour 'bogus'"),
    ("sine(amplitude=100000)", "outside INT's -32768..32767"),
    ("sine(period=-1)", "period must be a number > 0"),
    ("sine(colour=1)", "sine has no parameter 'colour'"),
    ("expr(Nope * 2)", "unknown tag 'Nope'"),
    ("steps(['a'], dwell=1)", "steps values are text"),
    ("playback('/nonexistent/file.csv')", "playback file /nonexistent/file.csv: No such file"),
    ("sine(amplitude=", "was never closed"),
    ("sine(amplitude=x)", "amplitude"),
])
def test_bad_behaviours_say_what_is_wrong(plant, text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_driver(text, plant, INT)


@pytest.mark.parametrize("content, message", [
    ("0,abc\n1,def\n", "'abc' is text, but the value is INT"),
    ("time,value\n", "no records"),
    (b"\xff\xfe\x00garbage", "not a text file"),
    ("0,1\n1,100000\n", "reaches 1..100000, outside INT's"),
    ("0,1\nnoon,2\n", "'noon' is neither seconds nor a timestamp"),
])
def test_unplayable_files_say_what_is_wrong(plant, tmp_path, content, message):
    path = tmp_path / "series.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        build_driver(f"playback({str(path)!r})", plant, INT)
    with pytest.raises(ValueError, match="Is a directory"):
        build_driver(f"playback({str(tmp_path)!r})", plant, INT)


def test_parse_behaviour_keeps_the_dynamic_expression():
    spec = parse_behaviour("expr(Pump_Run * 120 + noise(2))")
    assert spec.kind == "expr" and spec.inputs == {"Pump_Run"}


# The ENIP model.

def test_enip_tags_take_initial_values():
    device = Device.from_specs(["SP=REAL=1500", "Counts=DINT[4]=1,2", "Run=BOOL=true",
                                "Name=SSTRING='line 1'", "Texts=STRING[2]=\"a~b\",'c'"])
    assert device.tag("SP").attribute[0] == 1500.0
    assert device.tag("Counts").attribute[0:4] == [1, 2, 1, 2]
    assert device.tag("Run").attribute[0] is True
    assert device.tag("Name").attribute[0] == "line 1"
    assert device.tag("Texts").attribute[0:2] == ["a~b", "c"]


@pytest.mark.parametrize("spec, message", [
    ("A=INT=70000", "70000 is out of range for INT"),
    ("A=INT[2]=1,2,3", "3 initial values for 2 elements"),
    ("A=REAL=abc", "not a number"),
    ("A=REAL~nope()", "unknown behaviour 'nope'"),
    ("A=REAL junk", "expected <name>"),
])
def test_enip_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tag_spec(spec)


def test_enip_model_produces_linked_values_when_read():
    clock = FakeClock(wall=0.0)
    device = Device.from_specs(["Pump_Run=BOOL", "Flow=REAL~expr(pump_run * 120)", "Speed_SP=REAL=1500",
                                "Motor_Speed=REAL~lag(Speed_SP, tau=5)", "Pressure=REAL~expr(Flow / 10 + 1)"],
                               clock=clock)
    tag = device.tag
    assert tag("Flow").attribute[0] == 0 and tag("Pressure").attribute[0] == 1
    tag("Pump_Run").attribute[0] = True
    assert tag("Flow").attribute[0] == 120 and tag("Pressure").attribute[0] == 13
    tag("Motor_Speed").attribute[0]
    clock.advance(50)
    assert tag("Motor_Speed").attribute[0] == pytest.approx(1500, rel=1e-3)


def test_enip_write_to_a_driven_tag_is_refused_with_privilege_violation():
    from cpppo.enip.codec.cip import ServiceError

    device = Device.from_specs(["Flow=REAL~sine(amplitude=1)"])
    with pytest.raises(ServiceError) as caught:
        device.tag("Flow").attribute[0] = 1.0
    assert caught.value.status == 0x0F


@pytest.mark.parametrize("specs, message", [
    (["A=REAL~expr(B + 1)", "B=REAL~lag(A)"], "cycle: A -> B -> A"),
    (["A=REAL~expr(Missing)"], "tag 'A': .*unknown tag 'Missing'"),
    (["A=SINT~counter(rate=1, high=1000)"], "outside SINT"),
])
def test_enip_device_level_errors(specs, message):
    with pytest.raises(ValueError, match=message):
        Device.from_specs(specs)


def test_freeze_holds_values_still():
    clock = FakeClock(wall=0.0)
    device = Device.from_specs(["C=DINT~counter(rate=1)"], clock=clock)
    clock.advance(5)
    assert device.tag("C").attribute[0] == 5
    device.plant.freeze()
    clock.advance(5)
    assert device.tag("C").attribute[0] == 5
    device.plant.freeze(False)
    assert device.tag("C").attribute[0] == 10


def test_freeze_fault_holds_values_still_with_cpppo_faults():
    from cpppo.faults import FaultState, parse_fault

    clock = FakeClock(wall=0.0)
    device = ModbusDevice.from_specs(["30001~counter(rate=1)"], clock=clock)
    device.faults = FaultState()
    clock.advance(3)
    assert device.read(30001) == [3]
    device.faults.set(parse_fault("freeze", None, now=0.0))
    clock.advance(3)
    assert device.read(30001) == [3]
    device.faults.clear()
    assert device.read(30001) == [6]


def test_freeze_fault_holds_values_still():
    class Faults:  # the interface of cpppo.faults.FaultState that the plant consults
        active = None

        def frozen(self):
            return self.active == "freeze"

    clock = FakeClock(wall=0.0)
    device = Device.from_specs(["C=DINT~counter(rate=1)"], clock=clock)
    device.faults = faults = Faults()  # as the fleet's worker replaces it after building
    clock.advance(1)
    assert device.tag("C").attribute[0] == 1
    faults.active = "freeze"
    clock.advance(1)
    assert device.tag("C").attribute[0] == 1


def test_enip_writes_are_retained(tmp_path):
    journal = tmp_path / "line1.journal"
    device = Device.from_specs(["SP=REAL=1", "Counts=DINT[4]", "Name=STRING"], retain=str(journal))
    device.tag("SP").attribute[0] = 42.5
    device.tag("Counts").attribute[1:3] = [7, 8]
    device.tag("Name").attribute[0] = "hello"
    lines = journal.read_bytes().splitlines()
    assert json.loads(lines[-1]) == ["Name", 0, ["hello"]]
    again = Device.from_specs(["SP=REAL=1", "Counts=DINT[4]", "Name=STRING"], retain=str(journal))
    assert again.tag("SP").attribute[0] == 42.5
    assert again.tag("Counts").attribute[0:4] == [0, 7, 8, 0]
    assert again.tag("Name").attribute[0] == "hello"


def test_journal_skips_a_line_cut_short(tmp_path):
    path = tmp_path / "j"
    path.write_text('["A", 0, [1]]\n["A", 0, [2')
    seen = []
    Journal(path).replay(lambda *entry: seen.append(entry))
    assert seen == [("A", 0, [1])]


# The Modbus device.

def test_modbus_ranges_move_when_read():
    clock = FakeClock(wall=0.0)
    device = ModbusDevice.from_specs(["1=0", "30001-30002:float32~expr(r1 * 120.5)", "40001=1500",
                                      "40002~lag(r40001, tau=5)", "30003-30006~counter(rate=i + 1, high=99)",
                                      "30007-30008:int32:lo~counter(rate=100000)"], clock=clock)
    from cpppo.modbus.address import REGISTER_TYPES
    f32 = REGISTER_TYPES["float32"]
    assert f32.decode(device.read(30001, 2)) == 0.0
    assert device.handle(1, bytes.fromhex("05 0000 ff00")).hex() == "050000ff00"
    assert f32.decode(device.read(30001, 2)) == 120.5
    device.read(40002)
    clock.advance(100)
    assert device.read(40002) == [1500]
    clock.set(101)
    assert device.read(30003, 4) == [1, 2, 3, 4]  # 101, 202, 303, 404 wrapped at 99
    assert device.read(30007, 2) == [(10_100_000) & 0xFFFF, 10_100_000 >> 16]


def test_modbus_write_to_a_driven_register_is_refused_with_exception_2():
    device = ModbusDevice.from_specs(["40001-40002~sine(amplitude=10, offset=100)", "40003=5"])
    assert device.handle(1, bytes.fromhex("06 0001 0007")).hex() == "8602"
    assert device.handle(1, bytes.fromhex("10 0001 0002 04 0001 0002")).hex() == "9002"
    assert device.handle(1, bytes.fromhex("06 0002 0007")).hex() == "0600020007"


@pytest.mark.parametrize("specs, message", [
    (["40001~expr(r40002)"], "register 40001: .*unknown register 'r40002'"),
    (["40001~expr(r40002)", "40002~expr(r40001 + 1)"], "cycle: r40001 -> r40002 -> r40001"),
    (["40001~sine(amplitude=10)"], "outside uint16's 0..65535"),
    (["40001-40003:float32"], "3 registers do not hold whole float32 values"),
    (["40001:int16=40000"], "outside int16's -32768..32767"),
    (["1:float32"], "coils and discrete inputs hold bits"),
    (["40001~wobble()"], "unknown behaviour 'wobble'"),
])
def test_modbus_bad_specs(specs, message):
    with pytest.raises(ValueError, match=message):
        ModbusDevice.from_specs(specs)


def test_modbus_writes_are_retained(tmp_path):
    journal = str(tmp_path / "pump.journal")
    device = ModbusDevice.from_specs(["40001-40010=0", "1-8=0"], retain=journal)
    device.handle(1, bytes.fromhex("10 0002 0002 04 0007 0008"))
    device.handle(1, bytes.fromhex("05 0003 ff00"))
    device.handle(1, bytes.fromhex("16 0000 fff0 0005"))  # mask write 40001
    again = ModbusDevice.from_specs(["40001-40010=0", "1-8=0"], retain=journal)
    assert again.read(40001, 4) == [5, 0, 7, 8] and again.read(1, 8) == [0, 0, 0, 1, 0, 0, 0, 0]


def test_the_readme_examples_build():
    import re
    import shlex

    from tests.support import ROOT

    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## A living plant\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert [c[0] for c in commands] == ["enip_server", "modbus_sim"]
    enip = Device.from_specs(commands[0][3:], clock=FakeClock())
    modbus = ModbusDevice.from_specs(commands[1][3:], clock=FakeClock())
    enip.tag("Pump_Run").attribute[0] = True
    assert 100 < enip.tag("Flow").attribute[0] < 140 and enip.tag("Recipe").attribute[0] == "white bread"
    assert 140 <= REGISTER_F32_LO.decode(modbus.read(30004, 2)) <= 320


def test_what_historize_records_plays_back_into_another_device(tmp_path):
    import time

    from cpppo.server.enip.historize import historizing_attribute

    path = tmp_path / "line1.hst"
    with HistoryWriter(path) as writer:
        recording = historizing_attribute(writer)
        recorder = Device.from_specs(["Level=REAL", "Other=INT"], attribute_class=recording)
        for value in (10.0, 20.0, 40.0):
            recorder.tag("Level").attribute[0] = value
            recorder.tag("Other").attribute[0] = 7
            time.sleep(0.2)
        recorder.tag("Level").attribute[0]  # a read is recorded too
    clock = FakeClock()
    player = Device.from_specs([f"Level=REAL~playback({str(path)!r}, name='Level', interpolate=false, "
                                "loop=false, update=0)"], clock=clock)
    seen = []
    for _ in range(400):  # 20 s of the recording, which took a little over 0.6 s (more if loaded)
        seen.append(player.tag("Level").attribute[0])
        clock.advance(0.05)
    assert seen[0] == 10.0 and seen[-1] == 40.0 and set(seen) == {10.0, 20.0, 40.0}
    assert seen == sorted(seen)  # in the order recorded
