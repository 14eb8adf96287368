"""The warnings pages: open, overdue and closed lists, one warning with its ack and disposal forms.

The lists are live sections (the same for every reader); the forms are
outside them, per session (they carry the session's CSRF token) and are
never replaced while someone types.  The alarm book checks the input and
records nothing unless all of it is right; its message is shown in Chinese
(from the catalog) and English, with what was typed kept in the form.
"""
from __future__ import annotations

import time

from edge_agent.console.html import T, age, clock, esc, level_badge, level_index, num, section, table
from edge_agent.console.pages import point_href
from edge_agent.i18n import N_, zh

STATES = {"open": N_("open"), "acked": N_("acknowledged"), "closed": N_("closed"), "disposed": N_("disposed")}
LISTS = (("open", N_("Open")), ("overdue", N_("Overdue")), ("closed", N_("Closed")))
FIELDS = {"handler": N_("Handler"), "cause": N_("Cause"), "action": N_("Measures taken"), "by": N_("Acknowledged by")}


class FormProblem(Exception):
    """What is wrong with the form: `field` names the input, `message` says it in English, `chinese` in Chinese."""

    def __init__(self, name: str, message: str, chinese: str = ""):
        super().__init__(message)
        self.field, self.message, self.chinese = name, message, chinese

    @classmethod
    def of(cls, message: str, template: str = "", **values) -> "FormProblem":
        """From an English `message` (the alarm book's, or `template` filled in); Chinese from the catalog."""
        cn = zh(template)
        field = message.split(":", 1)[0] if ":" in message else ""
        return cls(field if field.isidentifier() else "", message, cn.format(**values) if cn else "")


def parse_handled_at(text: str) -> float | None:
    """'2025-12-01T08:30' (the form's local time) -> epoch seconds; '' -> None (the book uses now)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        fmt = "%Y-%m-%dT%H:%M:%S" if text.count(":") == 2 else "%Y-%m-%dT%H:%M"
        t = time.mktime(time.strptime(text, fmt))
    except ValueError:
        template = N_("handled_at: {text} is not a date and time; pick one in the form")
        raise FormProblem.of(template.format(text=text), template, text=text) from None
    return t


# ------------------------------------------------------------------ lists

def _row(a: dict, now: float) -> str:
    disposal = a.get("disposal")
    done = (f'{esc(disposal["handler"])}: {esc(disposal["cause"])} / {esc(disposal["action"])}'
            if disposal else "")
    end = clock(a["end"], now) if a.get("end") else f'<span class="muted">{T("ongoing")}</span>'
    deadline = "" if not a.get("deadline") else \
        (f'<span class="overdue">{T("overdue")}</span>' if a.get("overdue") else clock(a["deadline"], now))
    return (f'<tr class="row-{esc(a["level"])}" data-alarm="{a["id"]}"><td><a href="/warnings/{a["id"]}">'
            f'#{a["id"]}</a></td><td>{level_badge(level_index(a["level"]), overdue=bool(a.get("overdue")))}</td>'
            f'<td><a href="{point_href(a["device"], a["point"])}">{esc(a["device"])}/{esc(a["point"])}</a> '
            f'{esc(a.get("sensor_name"))} <span class="muted">{esc(a.get("location"))}</span></td>'
            f'<td>{esc(a.get("rule"))}</td><td class="num">{num(a.get("threshold"))}</td>'
            f'<td class="num">{num(a.get("value"))} / {num(a.get("extreme"))} {esc(a.get("unit"))}</td>'
            f'<td>{clock(a["start"], now)}</td><td>{end}</td><td>{T(STATES.get(a["state"], a["state"]))}</td>'
            f'<td>{deadline}</td><td>{done}</td></tr>')


def lists(book, now: float) -> dict[str, str]:
    if book is None:
        return {name: f"<p class='muted'>{T('no alarm book in this agent')}</p>" for name, _ in LISTS}
    out = {}
    for name, label in LISTS:
        alarms = book.list(name)
        alarms.sort(key=lambda a: (-level_index(a["level"]), -a["start"]))
        rows = [_row(a, now) for a in alarms[:500]]
        body = table(["#", T("Level"), T("Point"), T("Rule"), T("Threshold"), T("Value / extreme"), T("Start"),
                      T("End"), T("State"), T("Deadline"), T("Disposal")], rows, cls="alarms") if rows else \
            f'<p class="muted">{T("none")}</p>'
        out[name] = f'<h2>{T(label)} <span class="count">{len(alarms)}</span></h2>{body}'
    return out


def lists_body(sections: dict[str, str]) -> str:
    return "".join(section(name, sections[name], cls="wide") for name, _ in LISTS)


# ------------------------------------------------------------------ one warning

def detail(a: dict, now: float) -> dict[str, str]:
    rows = [(T("Level"), level_badge(level_index(a["level"]), overdue=bool(a.get("overdue")))
             + f' <span class="muted">{T("highest")}</span> {level_badge(level_index(a.get("max_level")))}'),
            (T("Point"), f'<a href="{point_href(a["device"], a["point"])}">{esc(a["device"])}/{esc(a["point"])}</a>'
                         f' {esc(a.get("sensor_name"))} {esc(a.get("location"))}'),
            (T("Rule"), esc(a.get("rule"))), (T("Threshold"), f'{num(a.get("threshold"))} {esc(a.get("unit"))}'),
            (T("Value / extreme"), f'{num(a.get("value"))} / {num(a.get("extreme"))} {esc(a.get("unit"))}'),
            (T("Start"), clock(a["start"], now) + f' <span class="muted">({age(a["start"], now)})</span>'),
            (T("End"), clock(a["end"], now) if a.get("end") else T("ongoing")),
            (T("State"), f'<span data-k="state">{T(STATES.get(a["state"], a["state"]))}</span>'),
            (T("Deadline"), clock(a.get("deadline"), now)),
            (T("Acknowledged"), f'{esc(a.get("acked_by") or "-")} {clock(a.get("acked_at"), now)}')]
    d = a.get("disposal")
    if d:
        rows.append((T("Disposal"), f'<span data-k="disposal">{esc(d["handler"])} · {clock(d["handled_at"], now)}'
                                    f' · {esc(d["cause"])} · {esc(d["action"])}</span>'))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return {"alarm": f'<h1>{T("Warning")} #{a["id"]}</h1><dl class="alarm">{body}</dl>'}


def forms(a: dict, *, user: str | None, csrf: str | None, can_login: bool, problem: FormProblem | None = None,
          typed: dict | None = None, done: str | None = None) -> str:
    """The ack and disposal forms for `a` (or why they are not offered)."""
    if not user:
        why = T("log in to acknowledge or dispose of this warning") if can_login else \
            T("writes are off: no console.password_file is configured on this gateway")
        link = f' <a href="/login?next=/warnings/{a["id"]}">{T("Log in")}</a>' if can_login else ""
        return f'<section class="wide"><p class="muted">{why}{link}</p></section>'
    typed = typed or {}
    msg = ""
    if problem is not None:
        msg = (f'<p class="error" role="alert" data-field="{esc(problem.field)}">'
               + (f'<span class="zh">{esc(problem.chinese)}</span> ' if problem.chinese else "")
               + f'<span class="en">{esc(problem.message)}</span></p>')
    elif done:
        msg = f'<p class="done" role="status">{T(done)}</p>'
    hidden = f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
    ack = ""
    if a["state"] == "open" or (a["state"] not in ("acked", "disposed") and not a.get("acked_at")):
        ack = (f'<form method="post" action="/warnings/{a["id"]}/ack" class="ack">{hidden}'
               f'<input type="hidden" name="by" value="{esc(user)}"><button type="submit">{T("Acknowledge")}</button>'
               "</form>")
    if a.get("disposal"):
        return f'<section class="wide forms">{msg}{ack}</section>'

    def field(name: str, kind: str = "input") -> str:
        value = esc(typed.get(name, user if name == "handler" else ""))
        bad = ' aria-invalid="true"' if problem is not None and problem.field == name else ""
        ctl = (f'<textarea name="{name}" id="f-{name}" rows="2"{bad}>{value}</textarea>' if kind == "textarea" else
               f'<input name="{name}" id="f-{name}" value="{value}"{bad}>')
        return f'<label for="f-{name}">{T(FIELDS[name])}</label>{ctl}'

    handled = esc(typed.get("handled_at", ""))
    dispose = (f'<form method="post" action="/warnings/{a["id"]}/dispose" class="dispose">{hidden}'
               f'<h2>{T("Disposal")}</h2>{field("handler")}{field("cause", "textarea")}{field("action", "textarea")}'
               f'<label for="f-handled_at">{T("Handled at (empty: now)")}</label>'
               f'<input type="datetime-local" name="handled_at" id="f-handled_at" value="{handled}">'
               f'<p class="muted">{T("at most 200 characters each; no ; ~ or |")}</p>'
               f'<button type="submit">{T("Record disposal")}</button></form>')
    return f'<section class="wide forms">{msg}{ack}{dispose}</section>'
