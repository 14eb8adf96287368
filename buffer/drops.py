"""Drop accounting: exact counters by type, one log line per episode, a report for upstream.

An episode starts with the first drop after a quiet spell and ends when
`quiet` seconds pass without one.  Its start is logged once (with the reason),
its end once (with the totals).  `take()` hands everything dropped since the
last take to the MQTT sink for the status topic.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("edge_agent.buffer")

REASONS = {
    "max_size": "buffer reached max_size",
    "max_age": "rows older than max_age",
    "memory": "the disk refuses writes and the in-memory hold reached memory_limit",
}


class DropLog:
    """Counters are by message type; `bytes` are body bytes."""

    def __init__(self, totals: dict[str, int] | None = None, quiet: float = 60.0):
        self.totals: dict[str, int] = dict(totals or {})   # over the life of the file
        self.quiet = quiet
        self.unsaved: dict[str, tuple[int, int]] = {}            # type -> [rows, bytes], not yet in the file
        self._report: dict[str, int] = {}                  # since the last take()
        self._report_first: float | None = None
        self._report_last: float | None = None
        self._reasons: set[str] = set()
        self._episode: dict[str, int] | None = None
        self._episode_start = 0.0
        self._episode_last = 0.0

    def record(self, reason: str, counts: dict[str, tuple[int, int]], *, saved: bool,
               now: float | None = None) -> None:
        """Count `counts` = {type: (rows, bytes)} dropped for `reason`; `saved`: already in the file."""
        if not counts:
            return
        now = time.time() if now is None else now
        if self._episode is None:
            self._episode, self._episode_start = {}, now
            log.warning("buffer: %s; dropping oldest rows (CDSS first, then TJSJ; definitions and alarms only "
                        "when nothing else is left); every drop is counted", REASONS.get(reason, reason))
        self._episode_last = now
        self._reasons.add(reason)
        self._report_first = self._report_first or now
        self._report_last = now
        for t, (n, b) in counts.items():
            self.totals[t] = self.totals.get(t, 0) + n
            self._episode[t] = self._episode.get(t, 0) + n
            self._report[t] = self._report.get(t, 0) + n
            if not saved:
                u = self.unsaved.get(t, (0, 0))
                self.unsaved[t] = (u[0] + n, u[1] + b)

    def tick(self, now: float) -> None:
        """End the episode after a quiet spell (logs its totals once)."""
        if self._episode is not None and now - self._episode_last >= self.quiet:
            what = ", ".join(f"{t} {n}" for t, n in sorted(self._episode.items()))
            log.warning("buffer: drops stopped; this episode dropped %s rows over %.0fs", what,
                        self._episode_last - self._episode_start)
            self._episode = None

    def restore_report(self, unreported: dict[str, int], first: float | None, last: float | None) -> None:
        """Drops counted before a restart and not yet reported upstream."""
        for t, n in unreported.items():
            if n:
                self._report[t] = self._report.get(t, 0) + n
        if self._report:
            self._report_first = first or self._report_first
            self._report_last = last or self._report_last

    def take(self) -> dict | None:
        """Everything dropped since the last take, or None.  The caller publishes it."""
        if not self._report:
            return None
        out = {"drops": dict(self._report), "first": self._report_first, "last": self._report_last,
               "reasons": sorted(self._reasons), "totals": dict(self.totals)}
        self._report, self._reasons = {}, set()
        self._report_first = self._report_last = None
        return out
