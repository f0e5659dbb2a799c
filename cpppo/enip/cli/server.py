"""`enip_server` / ``python -m cpppo.server.enip``: the EtherNet/IP controller simulator.

    enip_server [-a [<interface>][:<port>]] [-v...] [-d #.#[-#.#]] [-w [<interface>]:<port>]
                [-l <file>] [-p|--no-print] [--index <n>] [--retain <file>]
                [--route-path <path>|false] [-S] [-c <file>]
                <name>[@<cls>/<inst>/<attr>]=<TYPE>[<n>][!<access>][=<value>[,...]][~<behaviour>] ...

``main(argv, attribute_class=...)`` runs the server with a custom ``device.Attribute``
subclass (spec 2.1.3); it returns the exit status when the server stops (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import cpppo.log
from cpppo.enip.codec.epath import parse_route_path
from cpppo.enip.device import config as enip_config
from cpppo.enip.device.assembly import Assemblies
from cpppo.enip.device.connections import IOPolicy
from cpppo.enip.device.model import Attribute, Device
from cpppo.enip.server.io import IOEngine, parse_rpi_range, parse_t_o_port, serve_adapter
from cpppo.enip.server.transport import Settings, serve
from cpppo.server.hosting import WebBindError, bind_error_text, ensure_fd_limit, new_event_loop, parse_delay

__all__ = ["main", "parse_address", "parse_delay"]

log = logging.getLogger("enip.main")
DEFAULT_PORT = 44818


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_address(text: str) -> tuple[str, int]:
    """``[<interface>][:<port>]`` -> (host, port); '' host means all interfaces."""
    host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad --address {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"bad --address {text!r}: port must be 0-65535")
    return host.strip("[]"), port


def build_parser(prog: str = "enip_server", tags_required: bool = True) -> argparse.ArgumentParser:
    """The flags of ``enip_server``; ``tags_required=False`` for a simulator that brings its
    own tags (``poll_test``), so that TAG arguments are optional extras."""
    ap = _OneLineParser(prog=prog, description="EtherNet/IP CIP controller simulator (Logix tags).")
    ap.add_argument("-a", "--address", default=f":{DEFAULT_PORT}",
                    help="[<interface>][:<port>] to bind (default: all interfaces, port 44818)")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    ap.add_argument("-d", "--delay", help="delay every reply: #.# seconds, or a random #.#-#.# range")
    ap.add_argument("-w", "--web", default=None, metavar="[<interface>]:<port>",
                    help="serve the web API (http://<interface>:<port>/api) there (no interface: loopback)")
    ap.add_argument("--web-token", default=None, metavar="TOKEN",
                    help="allow changes through the web API to requests sending this token "
                         "(default: $CPPPO_WEB_TOKEN; without one the web API is read-only)")
    ap.add_argument("-l", "--log", help="log to this file (rotating, 10 MB x 5)")
    ap.add_argument("-p", "--print", dest="print", action="store_true", default=False,
                    help="print a line for every tag read/write")
    ap.add_argument("--no-print", dest="print", action="store_false", help="do not print I/O (the default)")
    ap.add_argument("--route-path", default=None,
                    help="required Unconnected Send route path: <port>/<link>, JSON, or false/0 for none")
    ap.add_argument("-S", "--simple", action="store_true", help="a simple non-routing device (no route path)")
    ap.add_argument("-c", "--config", action="append", default=[], help="extra cpppo.cfg file (repeatable)")
    ap.add_argument("--max-connections", type=int, default=Settings.max_connections,
                    help=f"concurrent TCP connections; one more evicts the longest idle "
                         f"(default {Settings.max_connections})")
    ap.add_argument("--max-in-flight", type=int, default=Settings.max_in_flight,
                    help=f"delayed replies a connection may have waiting before its requests wait "
                         f"(default {Settings.max_in_flight})")
    ap.add_argument("--idle-timeout", type=float, default=Settings.idle_timeout,
                    help=f"close TCP connections idle this long, seconds (default {Settings.idle_timeout:g})")
    ap.add_argument("--max-payload", type=int, default=Settings.max_payload,
                    help=f"largest encapsulation payload accepted (default {Settings.max_payload})")
    ap.add_argument("--udt", action="append", default=[], metavar="<Name>={<member>:<TYPE>[<n>],...}",
                    help="a structure (user-defined type) for the TAGs, e.g. "
                         "'Motor={Speed:REAL,Running:BOOL,Faults:DINT[4],Name:STRING}' (repeatable)")
    ap.add_argument("--tags-from", action="append", default=[], metavar="<export.L5X|export.CSV>",
                    help="serve the structures and tags of a Logix export (L5X, or a tag CSV whose "
                         "structures come from --udt or an L5X given before it) too (repeatable)")
    ap.add_argument("--index", type=int, default=0, metavar="N",
                    help="the device's number n, which behaviour parameters may use (default 0)")
    ap.add_argument("--retain", default=None, metavar="FILE",
                    help="keep client writes in this journal; they survive a restart (or SIGKILL)")
    io = ap.add_argument_group("implicit I/O (Class 1 adapter)")
    io.add_argument("--assembly", action="append", default=[], metavar="<inst>=<kind>[:<tag>,...]",
                    help="an Assembly Object instance over tags; kind: in (T->O), out (O->T), config, "
                         "input-only, listen-only; e.g. 100=in:Inputs 150=out:Outputs (repeatable)")
    io.add_argument("--io-port", type=int, default=2222,
                    help="UDP port of the I/O data on the --address interface (default 2222; 0: any free)")
    io.add_argument("--t-o-port", default="2222",
                    help="where T->O data goes unless the Forward Open says: a port on the scanner's "
                         "address (default 2222, as ODVA says), or 'source' (where its O->T data comes from)")
    io.add_argument("--rpi-range", default="1-10000", metavar="<min>-<max>",
                    help="RPIs accepted, milliseconds (default 1-10000)")
    io.add_argument("--lenient-sizes", action="store_true",
                    help="also accept Class 1 connection sizes that leave out the 2-byte sequence count "
                         "(cm-ethernetip's scanner); ODVA's sizes count it")
    ap.add_argument("tags", nargs="+" if tags_required else "*", metavar="TAG",
                    help="<name>[@<class>/<inst>/<attr>]=<TYPE>[<length>][!ro|!none][=<value>[,...]][~<behaviour>]"
                         + ("" if tags_required else " (optional: extra tags)"))
    return ap


def printing_attribute(base: type[Attribute], stream: Any = None) -> type[Attribute]:
    """A subclass of ``base`` that prints every read and write (``--print``)."""

    class PrintingAttribute(base):  # type: ignore[valid-type, misc]
        def __getitem__(self, key: int | slice) -> Any:
            value = super().__getitem__(key)
            print(f"{self.name:<24} {_key(key):<12} == {value!r}", file=stream or sys.stdout, flush=True)
            return value

        def __setitem__(self, key: int | slice, value: Any) -> None:
            super().__setitem__(key, value)
            print(f"{self.name:<24} {_key(key):<12} <= {value!r}", file=stream or sys.stdout, flush=True)

    return PrintingAttribute


def _key(key: int | slice) -> str:
    if isinstance(key, slice):
        return f"[{key.start or 0}-{(key.stop or 1) - 1}]"
    return f"[{key}]"


def make_device(args: argparse.Namespace, attribute_class: type[Attribute],
                identity_defaults: dict[str, Any] | None = None) -> Device:
    """The Device the parsed arguments describe (raises ValueError / ConfigError naming the cause)."""
    cfg = enip_config.load(args.config)
    identity = {**(identity_defaults or {}), **cfg.identity}
    if cfg.files:
        log.log(cpppo.log.NORMAL, "Loaded config files: %s", cfg.files)
    route_path = parse_route_path(args.route_path) if args.route_path is not None else None
    if args.print:
        attribute_class = printing_attribute(attribute_class)
    try:
        export = None
        if args.tags_from:
            from cpppo.enip.device.l5x import load_export  # only for an export

            export = load_export(args.tags_from, args.udt)
        return Device.from_specs(args.tags, identity, tcpip=cfg.tcpip, route_path=route_path,
                                 simple=args.simple, attribute_class=attribute_class,
                                 udts=() if export else args.udt, export=export,
                                 n=getattr(args, "index", 0), retain=getattr(args, "retain", None))
    except ValueError as exc:
        if cfg.files and not str(exc).startswith("bad tag spec"):
            raise ValueError(f"{', '.join(cfg.files)}: {exc}") from None
        raise


def io_policy(args: argparse.Namespace, host: str) -> IOPolicy:
    """The adapter's IOPolicy from --t-o-port, --rpi-range, --lenient-sizes (raises ValueError)."""
    rpi_min, rpi_max = parse_rpi_range(args.rpi_range)
    if not 0 <= args.io_port <= 65535:
        raise ValueError(f"bad --io-port {args.io_port}: must be 0-65535")
    return IOPolicy(rpi_min=rpi_min, rpi_max=rpi_max, t_o_port=parse_t_o_port(args.t_o_port),
                    io_host=host or "0.0.0.0", io_port=args.io_port,
                    lenient_sizes=getattr(args, "lenient_sizes", False))


async def run(device: Device, host: str, port: int, delay: Any, settings: Settings,
              stop: asyncio.Event | None = None, web: tuple[str, int] | None = None,
              assemblies: Assemblies | None = None, policy: IOPolicy | None = None,
              web_token: str | None = None) -> None:
    """Serve ``device`` until ``stop`` is set (or SIGINT/SIGTERM, or the web API's
    server/control/done); ``web``: (host, port) of the web API, if wanted, and ``web_token``
    the token its changes need (None: read-only); ``assemblies``: the ``--assembly``
    instances, served as a Class 1 adapter with ``policy``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    engine = IOEngine()
    if assemblies is not None:
        policy = policy or IOPolicy()
        server, endpoint = await serve_adapter(device, assemblies, host, port, engine=engine,
                                               io_port=policy.io_port, policy=policy, udp=True, delay=delay,
                                               settings=settings)
        log.log(cpppo.log.NORMAL, "I/O adapter: %d assemblies, UDP port %d", len(assemblies), endpoint.port)
    else:
        server = await serve(device, host, port, udp=True, delay=delay, settings=settings)
    log.log(cpppo.log.NORMAL, "EtherNet/IP simulator serving %d tags on %s:%d", len(device.tags),
            host or "0.0.0.0", server.port)
    web_api = None
    try:
        if web is not None:
            from cpppo.enip.web import serve_web

            web_api = await serve_web(device, server, *web, on_done=stop.set, token=web_token)
            log.log(cpppo.log.NORMAL, "web API on http://%s:%d/api", web_api.host, web_api.port)
        await stop.wait()
    finally:
        if web_api is not None:
            web_api.close()
            await web_api.wait_closed()
        server.close()
        await server.wait_closed()
        await engine.close()


def main(argv: Sequence[str] | None = None, attribute_class: type[Attribute] = Attribute,
         prog: str = "enip_server", *, identity: dict[str, Any] | None = None,
         customize: Callable[[Device], None] | None = None, tags_required: bool = True,
         **_ignored: Any) -> int:
    """Entry point of `enip_server`.

    ``attribute_class``: the Attribute subclass every tag is made of (spec 2.1.3);
    ``identity``: identity defaults (cpppo.cfg still overrides them); ``customize``: called
    with the Device before serving, to add or adjust objects; ``tags_required=False``: TAG
    arguments are optional (the caller's ``argv`` brings its own)."""
    words = sys.argv[1:] if argv is None else list(argv)
    exported = any(w == "--tags-from" or w.startswith("--tags-from=") for w in words)
    args = build_parser(prog, tags_required and not exported).parse_args(words)  # an export brings tags
    cpppo.log.configure(args.verbose, args.log)
    try:
        host, port = parse_address(args.address)
        delay = parse_delay(args.delay)
        web, web_connections, web_token = None, 0, None
        if args.web is not None:  # aiohttp is imported only for a web port
            from cpppo.enip.web import TOKEN_VARIABLE, parse_web_address
            from cpppo.server.aioweb import MAX_CONNECTIONS

            web, web_connections = parse_web_address(args.web), MAX_CONNECTIONS
            web_token = args.web_token or os.environ.get(TOKEN_VARIABLE) or None
        device = make_device(args, attribute_class, identity)
        if customize is not None:
            customize(device)
        settings = Settings(max_connections=args.max_connections, idle_timeout=args.idle_timeout,
                            max_payload=args.max_payload, max_in_flight=args.max_in_flight)
        for flag, value, least in (("--max-connections", args.max_connections, 1),
                                   ("--max-in-flight", args.max_in_flight, 1),
                                   ("--max-payload", args.max_payload, 64),
                                   ("--idle-timeout", args.idle_timeout, 0)):
            if value < least:
                raise ValueError(f"{flag} must be >= {least}, got {value:g}")
        ensure_fd_limit(args.max_connections + web_connections + 64)  # the web port's too
        policy = io_policy(args, host)
        assemblies = Assemblies.from_specs(device, args.assembly) if args.assembly else None
    except (ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for line in device.describe():
        log.info("tag %s", line)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(run(device, host, port, delay, settings, web=web, assemblies=assemblies,
                           policy=policy, web_token=web_token))
    except WebBindError as exc:
        print(f"{prog}: error: {exc.strerror}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: cannot serve on {host or '0.0.0.0'}:{port}: {bind_error_text(exc)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
