"""The fault record and slot (cpppo.faults): the command-line forms, bad input, and what a
server is told on a fake clock."""

from __future__ import annotations

import itertools

import pytest

from cpppo.faults import Fault, FaultError, FaultState, parse_duration, parse_fault


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# The forms the issue names, as `cpppo-fleet fault PATTERN KIND [ARG] [--for D]` passes them.
@pytest.mark.parametrize(("kind", "arg", "duration", "expect"), [
    ("latency", "300ms", None, {"low": 0.3, "high": 0.3}),
    ("latency", "200ms..800ms", None, {"low": 0.2, "high": 0.8}),
    ("timeout", None, None, {}),
    ("offline", None, "30s", {"until": 1030.0}),
    ("error", "0x08", None, {"code": 8}),
    ("error", "4", None, {"code": 4}),
    ("error", "0x05:Motor_Speed,Flow", None, {"code": 5, "only": ("Motor_Speed", "Flow")}),
    ("drop", "0.5", None, {"probability": 0.5}),
    ("drop", None, None, {"probability": 1.0}),
    ("corrupt", "0.25", None, {"probability": 0.25}),
    ("flap", "10s", None, {"period": 10.0}),
    ("freeze", None, "2m", {"until": 1120.0}),
])
def test_command_line_forms(kind, arg, duration, expect) -> None:
    fault = parse_fault(kind, arg, now=1000.0, duration=duration)
    assert fault.kind == kind and fault.since == 1000.0
    for key, value in expect.items():
        got = getattr(fault, key)
        assert got == (pytest.approx(value) if isinstance(value, float) else value), key
    assert Fault.from_dict(fault.to_dict()) == fault


@pytest.mark.parametrize(("kind", "arg", "duration", "message"), [
    ("melt", None, None, "unknown fault kind 'melt'"),
    ("latency", None, None, "latency needs a delay"),
    ("latency", "fast", None, "bad latency 'fast'"),
    ("latency", "800ms..200ms", None, "low end is above the high end"),
    ("drop", "1.5", None, "out of range"),
    ("drop", "half", None, "bad probability 'half'"),
    ("error", None, None, "error needs a code"),
    ("error", "0x1FF", None, "out of range"),
    ("error", "busy", None, "bad code 'busy'"),
    ("flap", "10ms", None, "too short"),
    ("timeout", "5", None, "takes no argument"),
    ("offline", None, "soon", "bad --for 'soon'"),
    ("offline", None, "0s", "longer than 0"),
    ("offline", None, "30d", "bad --for"),
])
def test_bad_input_is_one_line(kind, arg, duration, message) -> None:
    with pytest.raises(FaultError) as info:
        parse_fault(kind, arg, now=0.0, duration=duration)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_durations() -> None:
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("1h") == 3600.0 and parse_duration(".5") == 0.5
    with pytest.raises(FaultError):
        parse_duration("-1s")


def test_healthy_slot_answers_normally() -> None:
    state = FaultState()
    assert state.active is None
    answers = (state.latency(), state.silent(), state.offline(), state.drop(), state.error(), state.frozen())
    assert answers == (0.0, False, False, False, 0, False)
    assert state.corrupt(b"reply") == b"reply"


def test_expiry_clears_and_tells_listeners() -> None:
    clock = Clock()
    seen: list = []
    state = FaultState(clock=clock)
    state.listeners.append(seen.append)
    state.set(parse_fault("timeout", now=clock.now, duration="5s"))
    assert state.silent()
    clock.now += 4.9
    assert state.silent()
    clock.now += 0.2
    assert not state.silent() and state.active is None
    assert [f.kind if f else None for f in seen] == ["timeout", None]


def test_latency_range_and_seed_repeat() -> None:
    def draws(seed: int) -> list[float]:
        state = FaultState()
        state.set(parse_fault("latency", "200ms..800ms", now=0.0, seed=seed))
        return [state.latency(now=1.0) for _ in range(50)]

    first = draws(7)
    assert all(0.2 <= d <= 0.8 for d in first) and len(set(first)) > 40
    assert draws(7) == first and draws(8) != first


def test_drop_probability_is_near_its_rate() -> None:
    state = FaultState()
    state.set(parse_fault("drop", "0.5", now=0.0, seed=1))
    dropped = sum(state.drop(now=1.0) for _ in range(2000))
    assert 850 < dropped < 1150


def test_error_for_named_services_or_tags_only() -> None:
    state = FaultState()
    state.set(parse_fault("error", "0x05:Flow", now=0.0))
    assert state.error(["Read Tag", "Flow"], now=1.0) == 5
    assert state.error(["Read Tag", "Level"], now=1.0) == 0
    state.set(parse_fault("error", "0x08", now=0.0))
    assert state.error(["anything"], now=1.0) == 8


def test_flap_alternates_with_its_period() -> None:
    state = FaultState()
    state.set(parse_fault("flap", "10s", now=100.0))
    seen = [state.offline(now=100.0 + t) for t in (0.1, 4.9, 5.1, 9.9, 10.1, 15.1)]
    assert seen == [True, True, False, False, True, False]
    assert state.next_change(now=101.0) == pytest.approx(4.0)


def test_corrupt_changes_every_reply_at_rate_one() -> None:
    state = FaultState()
    state.set(parse_fault("corrupt", now=0.0, seed=3))
    reply = bytes(range(40))
    mangled = [state.corrupt(reply, now=1.0) for _ in range(100)]
    assert all(m != reply for m in mangled)
    assert any(len(m) < len(reply) for m in mangled) and any(len(m) == len(reply) for m in mangled)


def test_describe_says_what_status_shows() -> None:
    assert parse_fault("latency", "200ms..500ms", now=0).describe() == "latency 200-500ms"
    assert parse_fault("latency", "300ms", now=0).describe() == "latency 300ms"
    assert parse_fault("error", "0x08", now=0).describe() == "error 0x08"
    assert parse_fault("drop", "0.5", now=0).describe() == "drop 0.5"
    assert parse_fault("flap", "10s", now=0).describe() == "flap 10s"
    assert parse_fault("offline", now=0).describe() == "offline"


class FakeServer:
    def __init__(self) -> None:
        self.enabled = True
        self.changes: list[bool] = []

    def disable(self) -> None:
        self.enabled = False
        self.changes.append(False)

    async def enable(self) -> None:
        self.enabled = True
        self.changes.append(True)


def test_follow_listening_offline_then_clear() -> None:
    import asyncio

    from cpppo.faults import follow_listening

    async def scenario() -> list[bool]:
        state, server = FaultState(), FakeServer()
        follow_listening(state, server)
        await asyncio.sleep(0.01)
        assert server.changes == []  # nothing runs while healthy
        state.set(parse_fault("offline"))
        await asyncio.sleep(0.05)
        assert not server.enabled
        state.clear()
        await asyncio.sleep(0.05)
        return server.changes

    assert asyncio.run(scenario()) == [False, True]


def test_follow_listening_flaps_and_expires() -> None:
    import asyncio
    import time

    from cpppo.faults import follow_listening

    async def scenario() -> list[bool]:
        state, server = FaultState(), FakeServer()
        follow_listening(state, server)
        state.set(parse_fault("flap", "200ms", now=time.time(), duration="0.95s"))
        await asyncio.sleep(1.3)
        assert server.enabled and state.active is None
        return server.changes

    changes = asyncio.run(scenario())
    assert changes[0] is False and changes[-1] is True
    assert 3 <= len(changes) <= 12  # about ten half-periods in 0.95 s (fewer on a loaded machine)
    assert all(a != b for a, b in itertools.pairwise(changes))


def test_follow_listening_stop_leaves_no_task_pending() -> None:
    """A server closed for good while it flaps stops following: its task is cancelled (none
    is left pending for the loop's end or the garbage collector to complain about), and later
    faults on the same state no longer touch it."""
    import asyncio

    from cpppo.faults import follow_listening

    async def scenario() -> tuple[list[bool], list[asyncio.Task]]:
        state, server = FaultState(), FakeServer()
        stop = follow_listening(state, server)
        state.set(parse_fault("flap", "1s"))
        await asyncio.sleep(0.05)
        assert not server.enabled  # flapping: off first
        stop()
        await asyncio.sleep(0.01)  # the cancellation is delivered
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        state.clear()
        state.set(parse_fault("offline"))
        await asyncio.sleep(0.05)
        return server.changes, left

    changes, left = asyncio.run(scenario())
    assert left == []
    assert changes == [False]  # nothing after stop(): not re-enabled, not disabled again


def test_closed_servers_stop_following() -> None:
    """``close()`` of the ENIP and the Modbus server ends their fault following."""
    import asyncio

    from cpppo.enip.device.model import Device
    from cpppo.enip.server.transport import serve as serve_enip
    from cpppo.modbus.device import ModbusDevice
    from cpppo.modbus.server import serve as serve_modbus

    async def scenario() -> list[int]:
        enip, modbus = Device(), ModbusDevice({})
        servers = [await serve_enip(enip, "127.0.0.1", 0, udp=False),
                   await serve_modbus(modbus, "127.0.0.1", 0)]
        for device in (enip, modbus):
            device.faults.set(parse_fault("flap", "1s"))
        await asyncio.sleep(0.05)
        for server in servers:
            server.close()
            await server.wait_closed()
        await asyncio.sleep(0.01)
        return [len(enip.faults.listeners), len(modbus.faults.listeners),
                len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])]

    assert asyncio.run(scenario()) == [0, 0, 0]
