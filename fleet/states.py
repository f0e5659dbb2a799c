"""Process and device states, and the one place that decides a device's state.

A backend reports the state of each worker (a supervisord program, a container, ...) as a
:class:`ProcessState`; the health store reports each device's last poll.  :func:`device_state`
combines the two, so a backend (process, docker) only has to map its own vocabulary onto
:class:`ProcessState`.
"""

from __future__ import annotations

from enum import Enum


class ProcessState(Enum):
    """What a backend knows about the process (or container) hosting a device."""

    STOPPED = "stopped"  # not running, by request (or never started)
    STARTING = "starting"  # started, not yet settled
    RUNNING = "running"  # running
    BACKOFF = "backoff"  # exited too quickly; the supervisor will retry
    STOPPING = "stopping"  # being stopped
    EXITED = "exited"  # exited; the supervisor restarts it
    FATAL = "fatal"  # could not be started; the supervisor gave up
    UNKNOWN = "unknown"  # the backend cannot tell (e.g. supervisor not answering)

    @classmethod
    def from_supervisor(cls, statename: str) -> ProcessState:
        """Map a supervisord ``statename`` (RUNNING, BACKOFF, ...)."""
        return cls.__members__.get(statename.upper(), cls.UNKNOWN)


class DeviceState(Enum):
    """What ``cpppo-fleet status`` shows for a device."""

    STOPPED = "stopped"  # its worker is not running (fleet down, or not selected)
    STARTING = "starting"  # its worker is starting, or running but not yet polled since it started
    HEALTHY = "healthy"  # the last poll since its worker started succeeded
    DOWN = "down"  # its worker runs but the last poll failed (the error says why)
    RESTARTING = "restarting"  # its worker exited and is being restarted
    FAILED = "failed"  # its worker could not be started (the supervisor gave up), or gave up on it
    UNKNOWN = "unknown"  # no fresh health result (is the health poller running?)
    FAULTED = "faulted"  # running under an injected fault (cpppo-fleet fault): misbehaving on purpose


_BY_PROCESS = {
    ProcessState.STOPPED: DeviceState.STOPPED,
    ProcessState.STOPPING: DeviceState.STOPPED,
    ProcessState.STARTING: DeviceState.STARTING,
    ProcessState.BACKOFF: DeviceState.RESTARTING,
    ProcessState.EXITED: DeviceState.RESTARTING,
    ProcessState.FATAL: DeviceState.FAILED,
    ProcessState.UNKNOWN: DeviceState.UNKNOWN,
}


def device_state(process: ProcessState, last_ok: bool | None, fresh: bool) -> DeviceState:
    """The device's state from its worker's state and its last health result.

    ``last_ok`` is the last poll's outcome since the worker (re)started (None: not polled
    since); ``fresh`` says whether that poll is recent enough to trust (within a couple of
    health intervals).

    >>> device_state(ProcessState.RUNNING, True, True)
    <DeviceState.HEALTHY: 'healthy'>
    >>> device_state(ProcessState.RUNNING, False, True)
    <DeviceState.DOWN: 'down'>
    """
    if process is not ProcessState.RUNNING:
        return _BY_PROCESS[process]
    if last_ok is None:
        return DeviceState.STARTING
    if not fresh:
        return DeviceState.UNKNOWN
    return DeviceState.HEALTHY if last_ok else DeviceState.DOWN

