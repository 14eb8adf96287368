"""The agent's one time source: wall-clock time that tests can step, and a watch for an absurd clock.

`now()` / `now_ns()` are the wall clock (`time.time()`) plus `offset`, which is 0 in production;
`step(seconds)` moves it the way an NTP step or an operator's `date -s` moves the real one, and
`set_to(t)` puts it at a given time (an RTC reset to 2000).  `monotonic()` is never stepped:
periods, timeouts and durations measured by the agent use it.

`Watch.check(t)` looks at a wall time once a tick: a clock before EARLIEST (this release was built
after it, so no real time is earlier) or more than MAX_AHEAD past it is *absurd* (an RTC whose battery
died reads 2000-01-01).  The agent logs one WARNING when the clock becomes absurd and one INFO when
it is plausible again, and `/health` says "degraded" with the reason meanwhile (`Watch.reason`).
What the agent does with timestamps then is in the README ("The clock").
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("edge_agent.clock")

EARLIEST = 1704067200.0                  # 2024-01-01T00:00:00Z
MAX_AHEAD = 30 * 365.25 * 86400          # 2054: an RTC set decades ahead is as wrong as one reset
offset = 0.0


def now() -> float:
    return time.time() + offset


def now_ns() -> int:
    return time.time_ns() + int(offset * 1e9)


monotonic = time.monotonic


def step(seconds: float) -> None:
    """Move the agent's wall clock by `seconds` (tests; backwards with a negative value)."""
    global offset
    offset += seconds


def set_to(t: float) -> None:
    """Put the agent's wall clock at `t` (seconds since the epoch) from now on."""
    global offset
    offset = t - time.time()


def reset() -> None:
    global offset
    offset = 0.0


def absurd(t: float) -> str | None:
    """Why wall time `t` cannot be the real time, or None."""
    if t < EARLIEST:
        return (f"the system clock reads {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(t))} UTC, before this "
                "release was built (an RTC reset?); records carry that time until it is set: fix NTP or set the "
                "clock (timedatectl)")
    if t > EARLIEST + MAX_AHEAD:
        return (f"the system clock reads {time.strftime('%Y-%m-%d', time.gmtime(t))}, decades ahead; records carry "
                "that time until it is set: fix NTP or set the clock (timedatectl)")
    return None


class Watch:
    """One log line when the clock becomes absurd, one when it is plausible again; the reason meanwhile."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.since: float | None = None       # monotonic time the clock became absurd

    def check(self, t: float) -> None:
        reason = absurd(t)
        if reason is not None and self.reason is None:
            self.since = monotonic()
            log.warning("clock: %s", reason)
        elif reason is None and self.reason is not None:
            log.info("clock: plausible again (%s UTC) after %.0f s; records from then on carry the right time",
                     time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)), monotonic() - (self.since or monotonic()))
            self.since = None
        self.reason = reason
