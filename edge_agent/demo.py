"""`edge-agent demo`: the built-in simulated mine and the agent on it, with a live summary."""
from __future__ import annotations

import asyncio
import math
import signal
import socket
import sys
import time
import unicodedata
from importlib import resources
from pathlib import Path

from edge_agent.config import Site, load_site
from edge_agent.drivers.sim.harness import free_port

STATUS_NAMES = {1: "ALARM", 2: "CUT-OFF", 4: "calibrating", 8: "over-range", 16: "substation-fault",
                32: "not-polled", 64: "paused", 128: "sensor-fault"}


def demo_site_path() -> Path:
    return Path(str(resources.files("edge_agent.data"))) / "demo.yaml"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def demo_site(workdir: Path, mqtt: str | None, port: int) -> Site:
    """The bundled demo site, pointed at DIR and at the simulator's port."""
    site = load_site(demo_site_path())
    workdir = workdir.resolve()
    devices = tuple(d.model_copy(update={"port": port}) for d in site.devices)
    fwd = site.forward
    mq = fwd.get("mqtt")
    fwd = fwd.replaced("mqtt", mq.model_copy(update={"url": mqtt}) if (mqtt and mq is not None) else None)
    fwd = fwd.replaced("files", fwd.get("files").model_copy(update={"dir": str(workdir / "outbox")}))
    return site.model_copy(update={
        "devices": devices,
        "buffer": site.buffer.model_copy(update={"path": str(workdir / "buffer.sqlite")}),
        "forward": fwd,
    })


def status_text(bits: int) -> str:
    if bits == 0:
        return "ok"
    return ",".join(name for bit, name in STATUS_NAMES.items() if bits & bit)


def pad(text: str, width: int) -> str:
    """Left-align in terminal columns: CJK characters take two."""
    cols = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - cols)


def format_value(v: float, decimals: int) -> str:
    return "-" if math.isnan(v) else f"{v:.{decimals}f}"


def summary(agent, out=sys.stdout) -> None:
    k = agent.kernel
    now = time.strftime("%H:%M:%S")
    up = next((s for s in agent.sinks if s.name == "mqtt"), None)
    if up is None:
        uplink = "files only"
    elif up.connected:
        uplink = f"connected to {up.broker}"
    else:
        uplink = "down, buffering"
    stats = agent.buffer.stats()
    backlog = ", ".join(f"{s} {n}" for s, n in stats["backlog"].items())
    lines = [f"--- {now}  seq {agent.buffer.next_seq - 1}  buffer: {stats['rows']} rows ({backlog})  "
             f"uplink: {uplink}  frames: {agent.frames}"]
    for di, dev in enumerate(agent.site.devices):
        st = agent.devices[di]
        state = "online" if st.online else ("offline: " + st.reason if st.online is False else "starting")
        lines.append(f"  {dev.name} [{state}]")
        for rp in agent.catalog.by_device[di]:
            lines.append(f"    {pad(rp.id, 4)} {pad(rp.sensor_name, 14)} "
                         f"{format_value(k.value[rp.index], rp.decimals):>8} {pad(rp.unit, 7)} "
                         f"{status_text(int(k.status[rp.index]))}")
    print("\n".join(lines), file=out, flush=True)


async def run_demo(*, duration: float | None, mqtt: str | None, workdir: Path, scenario: str = "normal",
                   every: float = 3.0) -> int:
    from edge_agent.agent import Agent
    from edge_agent.drivers import sim

    workdir.mkdir(parents=True, exist_ok=True)
    port = 15020 if _port_free(15020) else free_port()
    site = demo_site(workdir, mqtt, port)
    server = await sim.start(site, port=port, scenario=scenario)
    agent = Agent(site)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"edge-agent demo: simulated mine on 127.0.0.1:{port} (scenario {scenario}); "
          f"work folder {workdir.resolve()}; uplink {mqtt or 'none'}; "
          f"{'running ' + format(duration, 'g') + ' s' if duration else 'Ctrl-C to stop'}", flush=True)

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
        await agent.run(stop)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
    outbox = workdir / "outbox"
    files = sorted(outbox.glob("*.txt")) if outbox.exists() else []
    print(f"edge-agent demo: stopped at seq {agent.buffer.next_seq - 1}; {len(files)} spec files in {outbox.resolve()}"
          + (f" (latest {files[-1].name})" if files else ""), flush=True)
    return 0
