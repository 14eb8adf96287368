"""The `edge-agent` command: thin skins over library calls.

Errors a user can cause end in one line per problem and exit status 1 (bad
configuration) or 2 (environment: cannot open the buffer, etc.); never a
traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from edge_agent import __version__
from edge_agent.errors import ConfigError, EdgeAgentError

log = logging.getLogger("edge_agent")


def _load(path: str):
    from edge_agent.config import load_site
    return load_site(path)


def _print_problems(exc: ConfigError) -> int:
    for p in exc.problems:
        print(p, file=sys.stderr)
    return 1


# ---------------------------------------------------------------- run

async def run_agent(site, *, ready=None, stop: asyncio.Event | None = None, settle: bool = False) -> int:
    """Run the agent on `site` until SIGTERM/SIGINT; SIGHUP re-reads the site file.  `settle` (the `run`
    command): what the site and the started agent hold is frozen out of the cyclic collector
    (edge_agent.memory)."""
    from edge_agent import memory, sdnotify
    from edge_agent.agent import Agent

    stop = stop or asyncio.Event()
    reloads: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_hup() -> None:
        if settle:
            memory.unsettle()          # what the reload replaces can be collected
        # parse here, in the loop: a bad file is rejected before anything changes
        try:
            reloads.put_nowait(_load(site.source))
            log.info("reload: %s read and valid; applying", site.source)
        except ConfigError as exc:
            for p in exc.problems:
                log.error("reload rejected, the running configuration stays: %s", p)

    if site.source:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    sdnotify.install_wedge_hook(loop)

    def started() -> None:
        if settle:
            memory.settle()
        if ready is not None:
            ready()

    if settle:
        memory.settle()                # the site's models: no collection while Agent() builds (0.08 s at 50,000)
    agent = Agent(site)
    await agent.run(stop, ready=started, reload_requests=reloads)
    return 0


def cmd_run(args) -> int:
    from edge_agent import logs, memory
    memory.map_large_allocations()
    logs.setup(args.log_format, args.log_level)
    try:
        site = _load(args.config)
    except ConfigError as exc:
        return _print_problems(exc)
    return asyncio.run(run_agent(site, settle=True))


# ---------------------------------------------------------------- check

def cmd_check(args) -> int:
    from edge_agent.checks import check_report
    from edge_agent.config import load_site
    try:
        # every check `run` relies on, and the receivers' code lengths
        site = load_site(args.config, receiver_limits=True)
    except ConfigError as exc:
        return _print_problems(exc)
    for line in check_report(site, verbose=args.verbose):
        print(line)
    if args.connect:
        from edge_agent.checks import connect_report
        unreachable = connect_report(site)
        for line in unreachable:
            print(line, file=sys.stderr)
        if unreachable:
            return 1
        from edge_agent.i18n import _
        print(_("connect: every OPC UA device answered and every node resolved"))
    if args.receiver:
        from edge_agent.checks import receiver_report
        lines, broken = receiver_report(site)
        print("\n".join(lines))
        return 1 if broken else 0
    return 0


# ---------------------------------------------------------------- demo / simulate

def cmd_demo(args) -> int:
    from edge_agent import logs
    from edge_agent.demo import run_demo
    logs.setup("plain", args.log_level)
    return asyncio.run(run_demo(duration=args.duration, mqtt=args.mqtt, workdir=Path(args.workdir),
                                scenario=args.scenario, every=args.every, console=args.console,
                                open_browser=not args.no_open))


def cmd_simulate(args) -> int:
    from edge_agent import logs
    from edge_agent.drivers import sim
    logs.setup("plain", args.log_level)
    try:
        site = _load(args.config)
    except ConfigError as exc:
        return _print_problems(exc)
    return sim.main(site, port=args.port, scenario=args.scenario)


def _scenario(name: str) -> str:
    """A simulator scenario's name, refused at the command line (one line, no traceback) when unknown."""
    from edge_agent.drivers.sim.dynamics import SCENARIOS
    from edge_agent.i18n import _
    if name not in SCENARIOS:
        raise argparse.ArgumentTypeError(_("unknown scenario {name}; known: {names}").format(
            name=name, names=", ".join(SCENARIOS)))
    return name


# ---------------------------------------------------------------- parser

BUILT_IN = ("run", "check", "demo", "simulate")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand's parser; only the built-in ones when `command` is one of them (`run` need
    not import the service, buffer, alarm and console commands' modules: ~3 MB for every site)."""
    p = argparse.ArgumentParser(prog="edge-agent", description="Edge gateway agent for underground mines")
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run until SIGTERM/SIGINT, then flush and exit 0")
    r.add_argument("-c", "--config", required=True, metavar="SITE.yaml")
    r.add_argument("--log-format", choices=("plain", "json"), default="plain")
    r.add_argument("--log-level", default="INFO")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate a site file, its point tables and its profile")
    c.add_argument("-c", "--config", required=True, metavar="SITE.yaml")
    c.add_argument("-v", "--verbose", action="store_true", help="also print every device's read plan")
    c.add_argument("--connect", action="store_true",
                   help="also connect to every OPC UA device and resolve its nodes and browse paths")
    c.add_argument("--receiver", action="store_true",
                   help="also list what a strict receiver would flag in the site's files (exit 1 on a rule break)")
    c.set_defaults(func=cmd_check)

    d = sub.add_parser("demo", help="run the built-in simulated mine and the agent on it")
    d.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    d.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", metavar="URL",
                   help="broker to forward to when reachable (default %(default)s)")
    d.add_argument("--workdir", default="edge-agent-demo", metavar="DIR",
                   help="buffer and outbox live here; a rerun continues the same seq (default %(default)s)")
    d.add_argument("--scenario", default="normal", metavar="NAME", type=_scenario,
                   help="simulator scenario (default normal)")
    d.add_argument("--every", type=float, default=3.0, metavar="S", help="summary interval (default 3 s)")
    d.add_argument("--console", default=None, metavar="HOST:PORT",
                   help="the operator console's address (default 127.0.0.1:8080, a free port when taken; '' = none)")
    d.add_argument("--no-open", action="store_true", help="do not open the console in a browser")
    d.add_argument("--log-level", default="WARNING")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("simulate", help="run the simulated devices of a site file alone")
    s.add_argument("-c", "--config", required=True, metavar="SIM.yaml")
    s.add_argument("--port", type=int, default=None, help="serve every device on this port instead")
    s.add_argument("--scenario", default="normal", metavar="NAME", type=_scenario)
    s.add_argument("--log-level", default="INFO")
    s.set_defaults(func=cmd_simulate)

    if command not in BUILT_IN:
        for register in _registrars():
            register(sub)
    return p


def _registrars():
    """Subcommands that live beside the library they skin."""
    from edge_agent import opcua_cert, pointtable, service
    from edge_agent.alarms import cli as alarms_cli
    from edge_agent.buffer import cli as buffer_cli
    from edge_agent.console import cli as console_cli
    return [buffer_cli.register, opcua_cert.register, service.register, pointtable.register, alarms_cli.register,
            console_cli.register]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return _print_problems(exc)
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:     # `edge-agent check ... | head`: the reader went away, nothing to say
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    sys.exit(main())
