"""The supervisord configuration the process backend writes into the state folder."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from fleet.backends.base import StateDir, health_programs
from fleet.limits import nofile_limit, poller_shards

MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes


def socket_path(state: StateDir) -> Path:
    """The XML-RPC unix socket: in the state folder, or under /tmp when that path is too long."""
    path = state.root / "supervisor.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(state.root).encode()).hexdigest()[:16]
    return Path("/tmp") / f"cpppo-fleet-{digest}.sock"


def pid_path(state: StateDir) -> Path:
    return state.root / "supervisord.pid"


def conf_path(state: StateDir) -> Path:
    return state.root / "supervisord.conf"


def min_fds(devices: int) -> int:
    """File descriptors supervisord (and so its children) should have: plenty, within the limit
    (each child raises its own soft limit to it again: fleet.limits)."""
    return min(max(4096, 4 * devices + 1024), nofile_limit())


def render(state: StateDir, fleet_name: str, workers: Sequence[tuple[str, str]], devices: int,
           python: str = sys.executable) -> str:
    """supervisord.conf text: one program per (worker, spec digest), plus the health poller.

    The digest of a worker's spec goes into its environment, so a changed spec is a changed
    program for ``reloadConfig`` and the worker is restarted by ``up``."""
    root = state.root
    lines = [
        "; written by cpppo-fleet; rewritten by every `cpppo-fleet up`",
        "[unix_http_server]",
        f"file={socket_path(state)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={root / 'supervisord.log'}",
        "logfile_maxbytes=1MB",
        "logfile_backups=1",
        f"pidfile={pid_path(state)}",
        f"childlogdir={state.logs}",
        f"directory={root}",
        f"identifier=cpppo-fleet-{fleet_name}",
        f"minfds={min_fds(devices)}",
        "nodaemon=false",
        "loglevel=info",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket_path(state)}",
        "",
    ]
    programs = [(name, f"{python} -m fleet.worker {state.worker_spec(name)}", digest)
                for name, digest in workers]
    shards = poller_shards(devices)
    for k, name in enumerate(health_programs(shards)):
        shard = f" --shard {k}/{shards}" if shards > 1 else ""
        programs.append((name, f"{python} -m fleet.health{shard} {root}", ""))
    for name, command, digest in programs:
        lines += [
            f"[program:{name}]",
            f"command={command}",
            f"directory={root}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "startretries=1000",
            "stopsignal=TERM",
            "stopwaitsecs=10",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={state.log(name)}",
            "stdout_logfile_maxbytes=1MB",
            "stdout_logfile_backups=1",
            f'environment=CPPPO_FLEET_SPEC="{digest}",PYTHONUNBUFFERED="1"',
            "",
        ]
    return "\n".join(lines)
