"""The one retry schedule: `start` seconds, doubling up to `cap`, each delay spread by +-`jitter`.

    retry = Backoff(1.0, 60.0)
    await asyncio.sleep(retry.next())     # after a failure: ~1, ~2, ~4 ... ~60, ~60 s
    retry.reset()                         # after a success: the next failure waits ~start again

The spread (20 % by default) keeps gateways and devices that lost one server together
from retrying in lockstep.  Drivers, sinks and the FTP push all use it.
"""
from __future__ import annotations

import random


class Backoff:
    def __init__(self, start: float = 1.0, cap: float = 60.0, jitter: float = 0.2, rng: random.Random | None = None):
        if not 0 < start <= cap or not 0 <= jitter < 1:
            raise ValueError("need 0 < start <= cap and 0 <= jitter < 1")
        self.start, self.cap, self.jitter = start, cap, jitter
        self.rng = rng or random.Random()
        self.nominal = start          # the next delay before its spread
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt (and double the one after, up to `cap`)."""
        d = self.nominal
        self.nominal = min(self.cap, d * 2)
        self.failures += 1
        return d * (1.0 + self.rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.nominal = self.start
        self.failures = 0
