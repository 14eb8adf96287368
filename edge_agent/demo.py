"""`edge-agent demo`: the built-in simulated mine and the agent on it, with a live summary."""
from __future__ import annotations

import asyncio
import math
import signal
import socket
import sys
import time
from importlib import resources
from pathlib import Path

from edge_agent.codes import LEVEL_NAMES_ZH, LEVELS
from edge_agent.config import ConsoleCfg, Site, load_site
from edge_agent.drivers.sim.harness import free_port
from edge_agent.fsutil import make_dirs
from edge_agent.i18n import N_, _, pad

# edge_agent.codes.STATUS_BITS' labels, spelled out so gettext finds them (tests/test_codes.py compares)
STATUS_NAMES = {1: N_("ALARM"), 2: N_("CUT-OFF"), 4: N_("calibrating"), 8: N_("over-range"),
                16: N_("substation-fault"), 32: N_("not-polled"), 64: N_("paused"), 128: N_("sensor-fault")}


def demo_site_path() -> Path:
    return Path(str(resources.files("edge_agent.data"))) / "demo.yaml"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


DEMO_USER, DEMO_PASSWORD = "demo", "demo-demo"     # README: how to log in to the demo's console


def demo_console(workdir: Path, listen: str) -> ConsoleCfg:
    """The demo's console: `listen`, and a password file with the demo login (made once in DIR)."""
    from edge_agent.console.auth import parse_users, set_user
    pw = workdir.resolve() / "console.pass"
    if not pw.exists() or DEMO_USER not in parse_users(pw.read_text(encoding="utf-8"), str(pw)):
        set_user(pw, DEMO_USER, DEMO_PASSWORD)
    return ConsoleCfg(listen=listen, password_file=str(pw))


def demo_systems_file(workdir: Path) -> Path:
    """demo.yaml with config/demo/systems.yaml merged in (its systems, each device's system, its devices),
    written to DIR/demo-site.yaml (a site file like any other: `check -c` it)."""
    import yaml
    folder = demo_site_path().parent
    data = yaml.safe_load(demo_site_path().read_text(encoding="utf-8"))
    extra = yaml.safe_load((folder / "demo" / "systems.yaml").read_text(encoding="utf-8")) or {}
    systems = []
    for s in extra.get("systems") or []:
        kind = str(s.get("kind", ""))
        systems.append({**s, "kind": str(folder / "demo" / kind)} if kind.endswith((".yaml", ".yml")) else s)
    data["systems"] = systems
    assign = extra.get("assign") or {}
    for dev in data["devices"]:
        if dev["name"] in assign:
            dev["system"] = assign[dev["name"]]
    data["devices"] += extra.get("devices") or []
    path = workdir / "demo-site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def demo_site(workdir: Path, mqtt: str | None, port: int, console: str | None = None) -> Site:
    """The bundled demo site with every monitoring system (config/demo/systems.yaml), pointed at DIR and at
    the simulator's port (and a console on `console`)."""
    workdir = workdir.resolve()
    make_dirs(workdir)
    site = load_site(demo_systems_file(workdir))
    devices = tuple(d.model_copy(update={"port": port}) for d in site.devices)
    fwd = site.forward
    mq = fwd.get("mqtt")
    fwd = fwd.replaced("mqtt", mq.model_copy(update={"url": mqtt}) if (mqtt and mq is not None) else None)
    fwd = fwd.replaced("files", fwd.get("files").model_copy(update={"dir": str(workdir / "outbox")}))
    return site.model_copy(update={
        "devices": devices,
        "buffer": site.buffer.model_copy(update={"path": str(workdir / "buffer.sqlite")}),
        "forward": fwd,
        "console": demo_console(workdir, console) if console else ConsoleCfg(enabled=False),
    })


def status_text(bits: int) -> str:
    if bits == 0:
        return _("ok")
    return ",".join(_(name) for bit, name in STATUS_NAMES.items() if bits & bit)


def format_value(v: float, decimals: int) -> str:
    return "-" if math.isnan(v) else f"{v:.{decimals}f}"


def summary(agent, out=sys.stdout) -> None:
    k = agent.kernel
    now = time.strftime("%H:%M:%S")
    up = agent.mqtt
    if up is None:
        uplink = _("files only")
    elif up.connected:
        uplink = _("connected to {broker}").format(broker=up.broker)
    else:
        uplink = _("down, buffering")
    stats = agent.buffer.stats()
    backlog = ", ".join(f"{s} {n}" for s, n in stats["backlog"].items())
    lines = [_("--- {now}  seq {seq}  buffer: {rows} rows ({backlog})  uplink: {uplink}  frames: {frames}").format(
        now=now, seq=agent.buffer.next_seq - 1, rows=stats["rows"], backlog=backlog, uplink=uplink,
        frames=agent.frames)]
    for di, dev in enumerate(agent.site.devices):
        st = agent.devices[di]
        state = _("online") if st.online else (_("offline: {reason}").format(reason=st.reason)
                                                if st.online is False else _("starting"))
        system = f" ({dev.system})" if dev.system else ""
        lines.append(f"  {dev.name}{system} [{state}]")
        for rp in agent.catalog.by_device[di]:
            level = k.level[rp.index]
            lines.append(f"    {pad(rp.id, 4)} {pad(rp.sensor_name, 14)} "
                         f"{format_value(k.value[rp.index], rp.decimals):>8} {pad(rp.unit, 7)} "
                         f"{status_text(int(k.status[rp.index]))}"
                         + (f"  {LEVEL_NAMES_ZH[level]} {LEVELS[level]}" if level else ""))
    print("\n".join(lines), file=out, flush=True)


def _console_listen(wanted: str | None) -> str | None:
    """The demo console's address: `wanted`, or 127.0.0.1:8080 when free, else a free port."""
    if wanted is not None:
        return wanted or None
    return "127.0.0.1:8080" if _port_free(8080) else f"127.0.0.1:{free_port()}"


def _open_browser(url: str) -> None:
    """Open the console in the desktop's browser, only where there is a desktop (never a text browser)."""
    import os
    import webbrowser
    if (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.stdout.isatty():
        try:
            webbrowser.open(url)
        except Exception:  # no browser: the address is printed anyway
            pass


async def run_demo(*, duration: float | None, mqtt: str | None, workdir: Path, scenario: str = "normal",
                   every: float = 3.0, console: str | None = None, open_browser: bool = True) -> int:
    """`console`: None = 127.0.0.1:8080 (or a free port), "" = no console, else host:port."""
    from edge_agent.agent import Agent
    from edge_agent.drivers import sim

    make_dirs(workdir)              # durably: the buffer and outbox live in it
    port = 15020 if _port_free(15020) else free_port()
    site = demo_site(workdir, mqtt, port, _console_listen(console))
    server = await sim.start(site, port=port, scenario=scenario)
    agent = Agent(site)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = _("running {s} s").format(s=format(duration, "g")) if duration else _("Ctrl-C to stop")
    print(_("edge-agent demo: simulated mine on 127.0.0.1:{port} (scenario {scenario}); work folder {dir}; "
            "uplink {uplink}; {running}").format(port=port, scenario=scenario, dir=workdir.resolve(),
                                                 uplink=mqtt or _("none"), running=running), flush=True)

    def ready() -> None:
        if agent.web is not None:
            print(_("edge-agent demo: console on {url} (log in as {user}, password {password}, to acknowledge "
                    "and dispose of warnings)").format(url=agent.web.url, user=DEMO_USER, password=DEMO_PASSWORD),
                  flush=True)
            if open_browser:
                _open_browser(agent.web.url)

    async def printer():
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except asyncio.TimeoutError:
                summary(agent)

    async def timer():
        if duration:
            try:
                await asyncio.wait_for(stop.wait(), timeout=duration)
            except asyncio.TimeoutError:
                stop.set()

    tasks = [asyncio.create_task(printer()), asyncio.create_task(timer())]
    try:
        await agent.run(stop, ready=ready)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
    outbox = workdir / "outbox"
    files = sorted((p for p in outbox.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.name) if outbox.exists() else []
    print(_("edge-agent demo: stopped at seq {seq}; {n} spec files in {dir}").format(
        seq=agent.buffer.next_seq - 1, n=len(files), dir=outbox.resolve())
        + (_(" (latest {name})").format(name=files[-1].name) if files else ""), flush=True)
    for s in site.resolved_systems:
        folder = outbox / s.dir
        n = sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.exists() else 0
        print(_("  {system} ({kind}): {n} files in {dir}").format(system=s.name, kind=s.profile.name, n=n,
                                                               dir=folder), flush=True)
    return 0
