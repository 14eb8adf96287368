"""Response deadlines: escalating alarms nobody acknowledged in time; the book's "changed" signal.

An alarm must be acknowledged (or disposed of) within the time its colour
gives (`alarms.deadlines`, else the profile's).  Past it, it is escalated once
per colour it reaches: one log line, one MQTT `escalation` record, the
escalation counter (`edge_agent_alarm_escalations_total`) and, while
unacknowledged, `overdue` in lists and in /metrics.  Deadlines are compared on
the monotonic clock (`AlarmBook.due`), so a stepped wall clock neither fires
nor delays one.
"""
from __future__ import annotations

import asyncio
import logging

from edge_agent.alarms.spec import LEVEL_NAMES_ZH, LEVELS

log = logging.getLogger("edge_agent.alarms")

FLUSH_EVERY = 1.0               # seconds between saves of the samples of open alarms
LOG = {"overdue": "alarm %d overdue: %s %s %s not acknowledged within %s (since %s); escalated"}


class Changed:
    """An asyncio.Event-like signal: `await wait()` returns at the next `set()` after the call."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.version = 0

    def set(self) -> None:
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    def is_set(self) -> bool:
        return False

    def clear(self) -> None:
        pass

    async def wait(self) -> bool:
        return await self._event.wait()


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _waiting(book) -> list:
    return [a for a in book.alarms.values() if not a.acknowledged and a.max_level > a.escalated]


def escalate(book) -> int:
    """Escalate every alarm of `book` past its deadline and not yet escalated at its highest level."""
    now_m, now = book.mono(), book.clock()
    late = [a for a in _waiting(book) if now_m >= a.due]
    records = []
    for a in late:
        a.escalated = a.max_level
        book.escalations += 1
        colour = LEVELS[a.max_level]
        records.append(book.records.json("escalation", "overdue", a, now, True, overdue_by=round(now_m - a.due, 3)))
        log.warning(LOG["overdue"], a.id, colour, LEVEL_NAMES_ZH[a.max_level], book.describe(a),
                    _span(book.deadlines[colour]), book.time_text(a.start))
    if late:
        book.commit(late, records)
    return len(late)


async def run_deadlines(book) -> None:
    """Escalate on time and save the samples of open alarms every second; until cancelled.
    Sleeps until the next deadline (or a second), woken early by `book.kick` (a new or raised alarm)."""
    while True:
        wait = FLUSH_EVERY
        dues = [a.due for a in _waiting(book)]
        if dues:
            wait = max(0.0, min(wait, min(dues) - book.mono()))
        try:
            await asyncio.wait_for(book.kick.wait(), wait)
        except asyncio.TimeoutError:
            pass
        book.kick.clear()
        escalate(book)
        book.flush()
