"""What an operator may send the alarm book, and the one error family it answers with.

`AlarmError(status, message)`: 400 bad input, 401 wrong token, 404 unknown
alarm, 409 already acknowledged / already disposed of, 503 the book cannot
record right now.  The message is one line a dispatcher can act on; nothing
was recorded when it is raised.  The user-facing texts are in TEXT, one place
to wrap for translation.
"""
from __future__ import annotations

import math

from edge_agent.errors import EdgeAgentError

MAX_TEXT = 200
FRAMING = (";", "~", "|")        # the spec files' separators (PROFILE.md)
CLOCK_SKEW = 60.0                # seconds a handled_at may lie ahead of the agent's clock

TEXT = {
    "not_text": "{field}: must be text",
    "empty": "{field}: empty; {hint}",
    "too_long": "{field}: {n} characters; write at most {max}",
    "framing": "{field}: contains {chars}, which the spec files use as separators; remove them",
    "control": "{field}: contains a line break or control character; write it on one line",
    "hint_handler": "name who handled the alarm (处理人)",
    "hint_by": "name who acknowledges the alarm",
    "hint_cause": "say what caused it (原因)",
    "hint_action": "say what was done (处理措施)",
    "bad_time": "handled_at: {value!r} is not a time; give epoch seconds (the CLI takes 'YYYY-MM-DD HH:MM')",
    "future": "handled_at: {at} is later than now ({now}); give the time it was handled, or leave it out for now",
    "before": "handled_at: {at} is before the alarm began ({start})",
    "unknown": "alarm {id}: no such alarm; `edge-agent alarms list --state all` shows the ids",
    "acked": "alarm {id} was already acknowledged by {by} at {at}; nothing recorded",
    "disposed": "alarm {id} was already disposed of by {by} at {at}; nothing recorded",
    "storage": "the alarm book cannot be written ({reason}); nothing recorded: check the disk and retry",
}

HINTS = {"handler": "hint_handler", "by": "hint_by", "cause": "hint_cause", "action": "hint_action"}


class AlarmError(EdgeAgentError):
    """One line for the operator; `status` is the HTTP status the local API answers with."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


def say(key: str, **kw) -> str:
    return TEXT[key].format(**kw)


def free_text(field: str, value) -> str:
    """A handler, cause, action or acknowledging name: non-empty, one line, <= 200 characters,
    none of `;` `~` `|`; surrounding blanks are dropped.  AlarmError(400) otherwise."""
    if not isinstance(value, str):
        raise AlarmError(400, say("not_text", field=field))
    text = value.strip()
    if not text:
        raise AlarmError(400, say("empty", field=field, hint=TEXT[HINTS.get(field, "hint_by")]))
    if len(text) > MAX_TEXT:
        raise AlarmError(400, say("too_long", field=field, n=len(text), max=MAX_TEXT))
    bad = [c for c in FRAMING if c in text]
    if bad:
        raise AlarmError(400, say("framing", field=field, chars=" ".join(repr(c) for c in bad)))
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise AlarmError(400, say("control", field=field))
    return text


def handled_time(value, *, now: float, start: float, show) -> float:
    """`handled_at` (epoch seconds; None: now): not ahead of `now` by more than the clock skew,
    not before the alarm's `start`.  `show(t)` formats a time for the message."""
    if value is None:
        return now
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AlarmError(400, say("bad_time", value=value))
    t = float(value)
    if t > now + CLOCK_SKEW:
        raise AlarmError(400, say("future", at=show(t), now=show(now)))
    if t < start - CLOCK_SKEW:
        raise AlarmError(400, say("before", at=show(t), start=show(start)))
    return t
