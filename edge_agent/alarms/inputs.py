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
from edge_agent.i18n import N_

MAX_TEXT = 200
FRAMING = (";", "~", "|")        # the spec files' separators (PROFILE.md)
CLOCK_SKEW = 60.0                # seconds a handled_at may lie ahead of the agent's clock

TEXT = {    # N_: in the catalog (edge_agent/locale/zh_CN.po); the console shows them in Chinese and English
    "not_text": N_("{field}: must be text"),
    "empty": N_("{field}: empty; {hint}"),
    "too_long": N_("{field}: {n} characters; write at most {max}"),
    "framing": N_("{field}: contains {chars}, which the spec files use as separators; remove them"),
    "control": N_("{field}: contains a line break or control character; write it on one line"),
    "hint_handler": N_("name who handled the alarm (处理人)"),
    "hint_by": N_("name who acknowledges the alarm"),
    "hint_cause": N_("say what caused it (原因)"),
    "hint_action": N_("say what was done (处理措施)"),
    "bad_time": N_("handled_at: {value!r} is not a time; give epoch seconds (the CLI takes 'YYYY-MM-DD HH:MM')"),
    "future": N_("handled_at: {at} is later than now ({now}); give the time it was handled, or leave it out for now"),
    "before": N_("handled_at: {at} is before the alarm began ({start})"),
    "unknown": N_("alarm {id}: no such alarm; `edge-agent alarms list --state all` shows the ids"),
    "acked": N_("alarm {id} was already acknowledged by {by} at {at}; nothing recorded"),
    "disposed": N_("alarm {id} was already disposed of by {by} at {at}; nothing recorded"),
    "storage": N_("the alarm book cannot be written ({reason}); nothing recorded: check the disk and retry"),
}

HINTS = {"handler": "hint_handler", "by": "hint_by", "cause": "hint_cause", "action": "hint_action"}


class AlarmError(EdgeAgentError):
    """One line for the operator; `status` is the HTTP status the local API answers with."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


class Said(str):
    """A message that keeps its TEXT template and values, so the console can show it in Chinese too."""
    template: str = ""
    values: dict = {}


def say(key: str, **kw) -> str:
    out = Said(TEXT[key].format(**kw))
    out.template, out.values = TEXT[key], kw
    return out


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
