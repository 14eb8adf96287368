"""The read-only pages: overview, device, point, configuration, as named live sections.

Each page is a dict of sections (name -> HTML).  The first request renders
them inside the layout; the live stream (live.py) renders the same functions
again and sends the sections that changed, so a page and its updates can
never disagree.  Data comes from `View` only.
"""
from __future__ import annotations

from urllib.parse import quote

import yaml

from edge_agent.console.html import (T, age, clock, esc, level_badge, level_index, num, section, size, status_text,
                                     table)
from edge_agent.console.view import View
from edge_agent.i18n import N_

COLOURS = ("red", "orange", "yellow", "blue")


def point_href(device: str, point_id: str) -> str:
    return f"/point/{quote(device, safe='')}/{quote(point_id, safe='')}"


def device_href(device: str) -> str:
    return f"/device/{quote(device, safe='')}"


def _device_state(d: dict) -> str:
    if d["online"] is True:
        return f'<span class="state ok">{T("online")}</span>'
    if d["online"] is False:
        return f'<span class="state bad">{T("offline")}</span> <span class="muted">{esc(d["reason"])}</span>'
    return f'<span class="state">{T("starting")}</span>'


# ------------------------------------------------------------------ overview

def open_alarms(view: View) -> list[dict]:
    book = view.book
    return book.list("open") if book is not None else []


def overview(view: View, history=None) -> dict[str, str]:
    now = view.now()
    return {"health": _health(view), "warnings": _warning_tiles(view, now), "systems": _systems(view),
            "devices": _devices(view, now), "uplink": _uplink(view), "buffer": _buffer(view),
            "records": _records(view, now)}


def _health(view: View) -> str:
    h = view.health()
    reasons = "".join(f"<li>{esc(r)}</li>" for r in h["reasons"])
    label = {"ok": N_("running normally"), "degraded": N_("degraded"), "down": N_("down")}[h["state"]]
    return f'<div class="health h-{h["state"]}">{T(label)}</div>' + (f"<ul>{reasons}</ul>" if reasons else "")


def _warning_tiles(view: View, now: float) -> str:
    if view.book is None:
        return f"<h2>{T('Warnings')}</h2><p class='muted'>{T('no alarm book in this agent')}</p>"
    alarms = open_alarms(view)
    counts = {c: 0 for c in COLOURS}
    for a in alarms:
        if a["level"] in counts:
            counts[a["level"]] += 1
    tiles = "".join(f'<a class="tile lv-{c}" href="/warnings" data-count="{c}"><b>{counts[c]}</b>'
                    f'{level_badge(level_index(c))}</a>' for c in COLOURS)
    rows = [f'<tr class="row-{esc(a["level"])}"><td>{level_badge(level_index(a["level"]), overdue=a["overdue"])}'
            f'</td><td><a href="/warnings/{a["id"]}">#{a["id"]}</a></td>'
            f'<td>{esc(a["sensor_name"])} <span class="muted">{esc(a["location"])}</span></td>'
            f'<td class="num">{num(a["value"])} {esc(a["unit"])}</td><td>{clock(a["start"], now)}</td></tr>'
            for a in sorted(alarms, key=lambda a: (-level_index(a["level"]), -a["start"]))[:10]]
    listing = table([T("Level"), "#", T("Point"), T("Value"), T("Since")], rows, cls="alarms") if rows else \
        f'<p class="muted">{T("no open warnings")}</p>'
    return f"<h2>{T('Open warnings')}</h2><div class='tiles'>{tiles}</div>{listing}"


def _systems(view: View) -> str:
    devices = view.devices()
    rows = []
    for s in view.systems():
        mine = [d for d in devices if d["system"] in (None, s["name"])] if len(view.systems()) > 1 else devices
        online = sum(1 for d in mine if d["online"])
        rows.append(f"<tr><td>{esc(s['name'])}</td><td>{esc(s['kind'])}</td><td>{esc(s['code'])}</td>"
                    f"<td>{online}/{len(mine)}</td></tr>")
    return f"<h2>{T('Systems')}</h2>" + table([T("System"), T("Kind"), T("Code"), T("Devices online")], rows)


def _devices(view: View, now: float) -> str:
    rows = [f'<tr><td><a href="{device_href(d["name"])}">{esc(d["name"])}</a></td><td>{esc(d["location"])}</td>'
            f'<td>{esc(d["driver"])}</td><td>{_device_state(d)}</td><td>{age(d["last_poll"], now)}</td>'
            f'<td class="num">{d["points"]}</td><td class="num">{d["polls"]}</td><td class="num">{d["errors"]}</td></tr>'
            for d in view.devices()]
    return f"<h2>{T('Devices')}</h2>" + table(
        [T("Device"), T("Location"), T("Driver"), T("State"), T("Last poll"), T("Points"), T("Polls"),
         T("Errors")], rows)


def _uplink(view: View) -> str:
    u = view.uplink()
    lines = []
    if u["mqtt"] is not None:
        m = u["mqtt"]
        state = f'<span class="state ok">{T("connected")}</span>' if m["connected"] else \
            f'<span class="state bad">{T("down, buffering")}</span>'
        lines.append(f"<dt>MQTT</dt><dd data-k='mqtt'>{state} {esc(m['broker'])} · {T('acknowledged')} "
                     f"{m['acked']} · {T('in flight')} {m['inflight']} · {T('reconnects')} {m['reconnects']}</dd>")
    else:
        lines.append(f"<dt>MQTT</dt><dd>{T('not configured')}</dd>")
    if u["files"] is not None:
        f = u["files"]
        state = f'<span class="state bad">{esc(f["failing"])}</span>' if f["failing"] else \
            f'<span class="state ok">{T("writing")}</span>'
        upload = "" if f["upload_waiting"] is None else f" · {T('waiting for upload')} {f['upload_waiting']}"
        lines.append(f"<dt>{T('Outbox')}</dt><dd>{state} {esc(f['dir'])} · {T('files written')} "
                     f"{f['written']}{upload}</dd>")
    return f"<h2>{T('Uplink')}</h2><dl>{''.join(lines)}</dl>"


def _buffer(view: View) -> str:
    b = view.buffer()
    backlog = ", ".join(f"{esc(s)} {n}" for s, n in b["backlog"].items()) or "-"
    drops = ", ".join(f"{esc(t)} {n}" for t, n in sorted(b["drops"].items()) if n) or T("none")
    err = f'<dt>{T("Disk")}</dt><dd class="state bad">{esc(b["disk_error"])}</dd>' if b["disk_error"] else ""
    return (f"<h2>{T('Buffer')}</h2><dl><dt>{T('Waiting')}</dt><dd>{b['rows']} · {size(b['bytes'])}"
            f" · {T('oldest')} {age(view.now() - b['oldest_age'], view.now()) if b['rows'] else '-'}</dd>"
            f"<dt>{T('Backlog per sink')}</dt><dd>{backlog}</dd><dt>{T('Dropped')}</dt><dd>{drops}</dd>"
            f"<dt>seq</dt><dd>{b['seq']}</dd>{err}</dl>")


def _records(view: View, now: float) -> str:
    recs = view.last_records()
    rows = [f"<tr><td>{esc(r['type'])}</td><td>{clock(r['time'], now)}</td><td>{age(r['time'], now)}</td></tr>"
            for r in recs]
    body = table([T("Record"), T("Written"), T("Age")], rows) if rows else f'<p class="muted">{T("none yet")}</p>'
    return f"<h2>{T('Last records sent')}</h2>{body}"


def overview_body(sections: dict[str, str]) -> str:
    return (section("health", sections["health"], cls="wide") + section("warnings", sections["warnings"], cls="wide")
            + '<div class="grid">' + "".join(section(k, sections[k]) for k in ("systems", "uplink", "buffer",
                                                                              "records")) + "</div>"
            + section("devices", sections["devices"], cls="wide"))


# ------------------------------------------------------------------ device

def device(view: View, di: int, changes=None) -> dict[str, str]:
    now = view.now()
    d = view.devices()[di]
    rows = []
    for rp in view.points_of(di):
        st = view.point_state(rp)
        changed = changes.last_change(rp.index) if changes is not None else None
        rows.append(
            f'<tr class="lvrow-{st["level"]}" data-point="{esc(rp.id)}"><td><a href="{point_href(d["name"], rp.id)}">'
            f'{esc(rp.id)}</a></td><td>{esc(rp.sensor_name)}</td><td>{esc(rp.cfg.location)}</td>'
            f'<td class="num value" data-k="v">{esc(st["text"])}</td><td>{esc(rp.unit)}</td>'
            f'<td>{status_text(view.status_names(st["status"]))}</td><td>{level_badge(st["level"])}</td>'
            f'<td>{clock(changed, now)}</td></tr>')
    head = (f"<h1>{esc(d['name'])} <small>{esc(d['location'])}</small></h1><p>{_device_state(d)} · "
            f"{esc(d['driver'])} · {T('last poll')} {age(d['last_poll'], now)} · {T('polls')} {d['polls']} · "
            f"{T('errors')} {d['errors']}</p>")
    return {"head": head, "points": table(
        [T("Point"), T("Sensor"), T("Location"), T("Value"), T("Unit"), T("Status"), T("Level"),
         T("Last change")], rows, cls="points")}


def device_body(sections: dict[str, str]) -> str:
    return section("head", sections["head"], cls="wide") + section("points", sections["points"], cls="wide")


# ------------------------------------------------------------------ point

def point(view: View, rp, changes=None) -> dict[str, str]:
    now = view.now()
    st = view.point_state(rp)
    changed = changes.last_change(rp.index) if changes is not None else None
    return {"now": (f'<div class="big lvrow-{st["level"]}"><span class="value" data-k="v">{esc(st["text"])}</span> '
                    f'<span class="unit">{esc(rp.unit)}</span></div><p>{level_badge(st["level"])} · '
                    f'{status_text(view.status_names(st["status"]))} · {T("sampled")} {clock(st["time"], now)} · '
                    f'{T("last change")} {clock(changed, now)}</p>')}


def point_body(view: View, rp, sections: dict[str, str]) -> str:
    dev = view.site.devices[rp.device].name
    th = "".join(f"<li>{level_badge(t['level'])} {esc(t['name'])} = {t['value']:g} {esc(rp.unit)}</li>"
                 for t in view.thresholds(rp)) or f"<li class='muted'>{T('no thresholds')}</li>"
    info = (f'<h1><a href="{device_href(dev)}">{esc(dev)}</a> / {esc(rp.id)} <small>{esc(rp.sensor_name)}</small></h1>'
            f"<dl><dt>{T('Point code')}</dt><dd>{esc(rp.code)}</dd><dt>{T('Location')}</dt>"
            f"<dd>{esc(rp.cfg.location)}</dd><dt>{T('Range')}</dt><dd>{rp.range_low:g} … {rp.range_high:g} "
            f"{esc(rp.unit)}</dd></dl><h2>{T('Thresholds')}</h2><ul class='thresholds'>{th}</ul>")
    chart = (f'<h2>{T("Trend")}</h2><div class="tabs"><button type="button" data-span="hour" class="on">'
             f'{T("last hour")}</button><button type="button" data-span="day">{T("last 24 hours")}</button></div>'
             f'<div id="chart" class="chart" data-src="{point_href(dev, rp.id)}/trend"></div>'
             f'<p class="muted">{T("band: lowest to highest value in each interval; line: live samples")}</p>')
    return (section("now", sections["now"], cls="wide") + f'<section class="wide">{chart}</section>'
            + f'<section class="wide">{info}</section>')


def trend(view: View, rp, history) -> dict:
    now = view.now()
    series = history.series(rp.index, now) if history is not None else {"hour": [], "day": []}
    st = view.point_state(rp)
    return {"now": now, "unit": rp.unit, "decimals": rp.decimals, "range": [rp.range_low, rp.range_high],
            "thresholds": view.thresholds(rp), "value": st["value"], "level": st["level"],
            "hour": [[round(t, 3), lo, hi] for t, lo, hi in series["hour"]],
            "day": [[round(t, 3), lo, hi] for t, lo, hi in series["day"]]}


# ------------------------------------------------------------------ configuration

def config_body(view: View) -> str:
    text = yaml.safe_dump(view.effective_config(), allow_unicode=True, sort_keys=False, width=120)
    return (f'<section class="wide"><h1>{T("Effective configuration")}</h1><p class="muted">'
            f'{T("read-only; defaults filled in; secret files are named, never shown")}</p>'
            f'<pre class="config">{esc(text)}</pre></section>')
