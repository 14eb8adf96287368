"""Running drivers against simulated devices outside the agent: for tests and bench/.

    site = site_from_yaml(text, tmp_path)
    async with Harness(site) as h:          # one driver task per device
        await h.wait(lambda: h.count(0) >= 3, 5.0)
        h.frames[0][-1].values
"""
from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from edge_agent.config import Site, load_site
from edge_agent.frame import Frame
from edge_agent.points import Catalog


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now.

    Drawn at random below the kernel's ephemeral range (ip_local_port_range): a port from bind(0) is
    an ephemeral one, which any outgoing connection may take as its source port before the caller
    binds it ("address already in use" when tests run beside each other); ports below the range are
    never handed out that way.  Falls back to bind(0) when the range starts too low."""
    import random

    low = _ephemeral_low()
    if low > 12000:
        for _ in range(200):
            port = random.randrange(10000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts on host:port; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def site_from_yaml(text: str, folder: Path, name: str = "site.yaml") -> Site:
    """Write `text` to folder/name and load it as a site file (validation included)."""
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8")
    return load_site(path)


class Harness:
    """Drivers for every device of `site`, with the frames they produced.

    `frames[i]` lists device i's frames; `arrivals[i]` their time.monotonic()
    at delivery; `states` the (index, online, reason) calls of state_changed.
    """

    def __init__(self, site: Site, *, keep: int | None = None, **driver_attrs):
        from edge_agent.drivers import make_driver
        self.site = site
        self.catalog = Catalog(site, site.loaded_profile)
        n = len(site.devices)
        self.frames: list[list[Frame]] = [[] for _ in range(n)]
        self.arrivals: list[list[float]] = [[] for _ in range(n)]
        self.totals = [0] * n
        self.keep = keep
        self.states: list[tuple[int, bool, str]] = []
        self.drivers = [make_driver(i, d, self.catalog.by_device[i], self._on_frame)
                        for i, d in enumerate(site.devices)]
        for drv in self.drivers:
            drv.state_changed = lambda i, ok, why: self.states.append((i, ok, why))
            for k, v in driver_attrs.items():
                setattr(drv, k, v)
        self.tasks: list[asyncio.Task] = []

    def _on_frame(self, frame: Frame) -> None:
        i = frame.device
        self.totals[i] += 1
        if self.keep is not None and len(self.frames[i]) >= self.keep:
            return
        self.frames[i].append(frame)
        self.arrivals[i].append(time.monotonic())

    def count(self, i: int) -> int:
        return self.totals[i]

    async def __aenter__(self) -> "Harness":
        for drv in self.drivers:
            await drv.__aenter__()
        self.tasks = [asyncio.create_task(d.run()) for d in self.drivers]
        return self

    async def __aexit__(self, *exc) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for drv in self.drivers:
            await drv.__aexit__(None, None, None)

    async def wait(self, cond, timeout: float, what: str = "condition") -> None:
        """Poll `cond()` every 20 ms until true; raise TimeoutError naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached within {timeout}s")
            await asyncio.sleep(0.02)
