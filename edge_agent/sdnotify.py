"""systemd's notify protocol (sd_notify) over `$NOTIFY_SOCKET`, without libsystemd.

What a caller may rely on:

- `notify(state)` sends one datagram (e.g. ``"READY=1"``) to the socket named by
  `$NOTIFY_SOCKET` (a path, or an abstract name written ``@name``) and returns True
  when it was sent.  Without `$NOTIFY_SOCKET` (not started by systemd, or `Type=`
  other than notify) it does nothing and returns False; a send error is logged once
  at DEBUG and returns False.  It never raises.
- `ready()`, `stopping()`, `reloading()`, `status(text)` and `watchdog()` are the
  usual messages.
- `watchdog_interval()` is systemd's `WatchdogSec=` in seconds from `$WATCHDOG_USEC`,
  or None when the watchdog is off or meant for another process (`$WATCHDOG_PID`).
- `Watchdog(interval).run(healthy)` pings ``WATCHDOG=1`` every interval/2 from the
  event loop, and only while `healthy()` returns true.  A wedged loop cannot run the
  coroutine and an unhealthy pipeline withholds the ping, so systemd restarts the
  service after `WatchdogSec=` either way.  Changes between healthy and not are
  logged once each, never per ping.
- `install_wedge_hook(loop)`: a debug hook for tests of the above.  Only when
  `$EDGE_AGENT_DEBUG_WEDGE` is set to a number of seconds, SIGUSR2 blocks the event
  loop for that long (a deliberately wedged loop).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from typing import Callable

log = logging.getLogger("edge_agent.sdnotify")

WEDGE_ENV = "EDGE_AGENT_DEBUG_WEDGE"


def _address(name: str) -> str | bytes:
    # "@foo" is the abstract socket "\0foo" (sd_notify(3)); Linux addresses those as bytes
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(state: str, *, env: dict | None = None) -> bool:
    """Send `state` (one or more ``KEY=VALUE`` lines) to `$NOTIFY_SOCKET`; True if it went out."""
    name = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not name:
        return False
    if not (name.startswith("/") or name.startswith("@")):
        log.debug("NOTIFY_SOCKET=%r is neither a path nor an abstract name; ignored", name)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), _address(name))
    except OSError as exc:
        log.debug("sd_notify %r to %s failed: %s", state.split("\n", 1)[0], name, exc)
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Startup finished (`Type=notify` units are "active" from here)."""
    return notify("READY=1" + (f"\nSTATUS={status_text}" if status_text else ""))


def stopping() -> bool:
    return notify("STOPPING=1")


def reloading() -> bool:
    """Reloading the configuration; send `ready()` when done.  MONOTONIC_USEC is what systemd >= 253 expects."""
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def status(text: str) -> bool:
    """A one-line status shown by `systemctl status`."""
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval(env: dict | None = None) -> float | None:
    """`WatchdogSec=` in seconds, or None when the watchdog is not enabled for this process."""
    env = env if env is not None else os.environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1e6


class Watchdog:
    """Pings ``WATCHDOG=1`` every `interval`/2 while `healthy()` holds (see the module docstring).

    `interval` defaults to `watchdog_interval()`; when that is None, `run()` returns at
    once (no watchdog configured).  `pings` counts the pings sent, for tests and status.
    """

    def __init__(self, interval: float | None = None, *, send: Callable[[], bool] = watchdog):
        self.interval = interval if interval is not None else watchdog_interval()
        self.send = send
        self.pings = 0
        self.healthy = True

    @property
    def enabled(self) -> bool:
        return bool(self.interval)

    def _check(self, healthy: Callable[[], bool]) -> bool:
        try:
            ok = bool(healthy())
        except Exception:  # a broken health check must not look healthy, nor kill the loop
            log.exception("watchdog: health check raised; treating as unhealthy")
            ok = False
        if ok != self.healthy:
            if ok:
                log.warning("watchdog: healthy again; resuming WATCHDOG=1 pings")
            else:
                log.error("watchdog: pipeline unhealthy; withholding WATCHDOG=1 (systemd restarts the service "
                          "after %gs if this lasts)", self.interval)
            self.healthy = ok
        return ok

    async def run(self, healthy: Callable[[], bool] = lambda: True) -> None:
        """Ping until cancelled.  Cancel it at shutdown (after `stopping()`)."""
        if not self.interval:
            return
        period = self.interval / 2
        while True:
            if self._check(healthy) and self.send():
                self.pings += 1
            # a sleep on the loop itself: if the loop is blocked, this never wakes and no ping goes out
            await asyncio.sleep(period)


def install_wedge_hook(loop: asyncio.AbstractEventLoop, signum: int = signal.SIGUSR2,
                       env: dict | None = None) -> bool:
    """Debug hook: with `$EDGE_AGENT_DEBUG_WEDGE=SECONDS`, `signum` blocks the loop that long.

    Returns True when installed.  Off unless the variable is set, so a stray SIGUSR2
    on a production gateway cannot wedge it.
    """
    raw = (env if env is not None else os.environ).get(WEDGE_ENV)
    if not raw:
        return False
    try:
        seconds = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of seconds; debug wedge hook not installed", WEDGE_ENV, raw)
        return False

    def wedge() -> None:
        log.warning("debug: blocking the event loop for %gs (%s)", seconds, WEDGE_ENV)
        time.sleep(seconds)  # deliberately blocking: that is the point of the hook

    loop.add_signal_handler(signum, wedge)
    return True
