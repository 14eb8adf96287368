"""HTML building blocks for the console pages: escaping, bilingual labels, level badges, times, the layout.

Every label is English source text looked up in the Chinese catalog:
`T("Devices")` renders `<span class="zh">设备</span> <span class="en">Devices</span>`
(Chinese first; English only when the catalog has no Chinese).  Nothing here
reads the agent: pages pass plain data in.
"""
from __future__ import annotations

import html
import math
import time

from edge_agent import __version__
from edge_agent.buffer.tools import format_size as size  # noqa: F401 (pages use it)
from edge_agent.i18n import N_, zh
from edge_agent.units import format_age

LEVEL_NAMES = (N_("normal"), N_("blue"), N_("yellow"), N_("orange"), N_("red"))
LEVEL_KEYS = ("none", "blue", "yellow", "orange", "red")
STATUS_TEXT = {"alarm": N_("alarm"), "cutoff": N_("cut-off"), "calibrating": N_("calibrating"),
               "over_range": N_("over range"), "substation_fault": N_("substation fault"),
               "not_polled": N_("not polled"), "paused": N_("paused"), "sensor_fault": N_("sensor fault")}


def esc(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def T(message: str, **values) -> str:
    """A bilingual label (HTML): Chinese first, English after; `values` fill `{name}` in both."""
    cn = zh(message)
    en = message.format(**values) if values else message
    if not cn:
        return f'<span class="en only">{esc(en)}</span>'
    cn = cn.format(**values) if values else cn
    return f'<span class="zh" lang="zh-CN">{esc(cn)}</span> <span class="en" lang="en">{esc(en)}</span>'


def plain(message: str, **values) -> str:
    """The same label as text, for attributes and titles: '设备 Devices'."""
    cn = zh(message)
    en = message.format(**values) if values else message
    return f"{cn.format(**values) if values else cn} {en}".strip() if cn else en


def level_badge(level: int, *, overdue: bool = False) -> str:
    key = LEVEL_KEYS[level] if 0 <= level < len(LEVEL_KEYS) else "none"
    extra = f' <span class="overdue">{T("overdue")}</span>' if overdue else ""
    return f'<span class="lv lv-{key}" data-level="{key}">{T(LEVEL_NAMES[LEVEL_KEYS.index(key)])}</span>{extra}'


def level_index(name: str | None) -> int:
    return LEVEL_KEYS.index(name) if name in LEVEL_KEYS else 0


def status_text(names: list[str]) -> str:
    if not names:
        return T("ok")
    return ", ".join(T(STATUS_TEXT.get(n, n)) for n in names)


def clock(t: float | None, now: float | None = None) -> str:
    """Local time: 'HH:MM:SS' today, else 'MM-DD HH:MM'."""
    if not t:
        return "-"
    now = now or time.time()
    lt = time.localtime(t)
    if time.strftime("%Y%m%d", lt) == time.strftime("%Y%m%d", time.localtime(now)):
        return time.strftime("%H:%M:%S", lt)
    return time.strftime("%m-%d %H:%M", lt)


def age(t: float | None, now: float) -> str:
    return format_age(now - t) if t else "-"


def num(v) -> str:
    """A value from an alarm (no point decimals at hand): at most 3 decimals, '-' for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (int, float)):
        return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)
    return esc(v)


def section(name: str, body: str, *, tag: str = "section", cls: str = "") -> str:
    return f'<{tag} data-section="{esc(name)}" class="{esc(cls)}">{body}</{tag}>'


def table(headers: list[str], rows: list[str], *, cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def layout(*, title: str, live: str, body: str, ident: dict, user: str | None, csrf: str | None,
           can_login: bool, path: str) -> str:
    """The page around `body`; `live` is the page key the browser subscribes to (/live?page=...)."""
    nav = "".join(
        f'<a href="{href}" class="{"here" if (path == href or (href != "/" and path.startswith(href))) else ""}">'
        f'{T(label)}</a>'
        for href, label in (("/", N_("Overview")), ("/warnings", N_("Warnings")), ("/config", N_("Configuration"))))
    if user:
        who = (f'<span class="user">{esc(user)}</span> <form method="post" action="/logout" class="inline">'
               f'<input type="hidden" name="csrf" value="{esc(csrf)}"><button type="submit">{T("Log out")}</button>'
               "</form>")
    elif can_login:
        who = f'<a href="/login?next={esc(path)}">{T("Log in")}</a>'
    else:
        who = f'<span class="muted">{T("read-only")}</span>'
    meta = f'<meta name="csrf" content="{esc(csrf)}">' if csrf else ""
    mine = esc(ident.get("mine_name") or ident.get("mine_code"))
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} - {mine} - edge-agent</title>{meta}"
        '<link rel="stylesheet" href="/static/console.css"><link rel="icon" href="/static/icon.svg">'
        '<script src="/static/console.js" defer></script></head>'
        f'<body data-live="{esc(live)}"><header><div class="brand"><strong>{mine}</strong> '
        f'<span class="muted">{esc(ident.get("gateway"))} · edge-agent {__version__}</span></div>'
        f'<nav>{nav}</nav><div class="who">{who}</div>'
        f'<div class="conn" id="conn" data-state="connecting" title="{esc(plain("live updates"))}">'
        f'<span class="dot"></span><span class="conn-on">{T("live")}</span>'
        f'<span class="conn-off">{T("reconnecting")}</span></div></header>'
        f"<main>{body}</main></body></html>")
