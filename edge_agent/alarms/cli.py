"""`edge-agent alarms list|show|ack|dispose -c SITE.yaml`: the closed loop, against the running agent.

A thin client of the local HTTP API (api.py): the address is the site file's
`console.listen`, the token the content of `alarms.token_file` (looked up
like every other secret).  Exit status 0 done, 1 refused (bad input, unknown
alarm, already disposed of, wrong token), 2 the agent cannot be reached or
the token file cannot be read.  The user-facing texts are in TEXT.
"""
from __future__ import annotations

import datetime as dt
import sys
import urllib.error
import urllib.request

import orjson

from edge_agent.alarms.spec import LEVEL_NAMES_ZH, LEVELS
from edge_agent.i18n import N_, _, pad, width

TEXT = {
    "help": N_("the closed loop: list, show, acknowledge and dispose of alarms of the running agent"),
    "help_list": N_("list alarms (newest first)"),
    "help_show": N_("one alarm, every field"),
    "help_ack": N_("acknowledge an alarm (stops its response deadline)"),
    "help_dispose": N_("record the disposal of an alarm: who, why, what was done (处置)"),
    "help_state": N_("open (default), overdue, closed or all"),
    "help_json": N_("print the API's JSON instead of a table"),
    "help_url": N_("the agent's web server (default: http://<console.listen>)"),
    "help_by": N_("who acknowledges (name or job number)"),
    "help_handler": N_("who handled it (处理人)"),
    "help_cause": N_("what caused it (原因)"),
    "help_action": N_("what was done (处理措施)"),
    "help_at": N_("when it was handled: 'YYYY-MM-DD HH:MM[:SS]' in the mine's time (default: now)"),
    "unreachable": N_("cannot reach the agent at {url} ({reason}); is it running, with console.enabled, on "
                   "console.listen of {site}?"),
    "refused": N_("{message}"),
    "bad_at": N_("--at: {text!r} is not a time; write 'YYYY-MM-DD HH:MM' or 'YYYY-MM-DD HH:MM:SS'"),
    "none": N_("no {state} alarms"),
    "acked": N_("alarm {id} acknowledged by {by}"),
    "disposed": N_("alarm {id} disposed of by {handler}: the platform receives YCBJ again with cause, action, "
                "entered_at and entered_by filled (spec files and MQTT) and a `disposal` message on MQTT"),
    "header": (N_("ID"), N_("LEVEL"), N_("STATE"), N_("DUE"), N_("START"), N_("END"), N_("POINT"), N_("LOCATION"),
               N_("VALUE"), N_("EXTREME")),
    "overdue": N_("OVERDUE"),
}


def _say(key: str, **kw) -> str:
    return _(TEXT[key]).format(**kw)


def register(subparsers) -> None:
    p = subparsers.add_parser("alarms", help=_(TEXT["help"]))
    sub = p.add_subparsers(dest="alarms_command", required=True, metavar="ACTION")

    def common(q) -> None:
        q.add_argument("-c", "--config", required=True, metavar="SITE.yaml")
        q.add_argument("--url", default=None, help=_(TEXT["help_url"]))
        q.add_argument("--json", action="store_true", help=_(TEXT["help_json"]))

    q = sub.add_parser("list", help=_(TEXT["help_list"]))
    common(q)
    q.add_argument("--state", default="open", choices=("open", "overdue", "closed", "all"), help=_(TEXT["help_state"]))
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("show", help=_(TEXT["help_show"]))
    common(q)
    q.add_argument("id", type=int)
    q.set_defaults(func=cmd_show)
    q = sub.add_parser("ack", help=_(TEXT["help_ack"]))
    common(q)
    q.add_argument("id", type=int)
    q.add_argument("--by", required=True, help=_(TEXT["help_by"]))
    q.set_defaults(func=cmd_ack)
    q = sub.add_parser("dispose", help=_(TEXT["help_dispose"]))
    common(q)
    q.add_argument("id", type=int)
    q.add_argument("--handler", required=True, help=_(TEXT["help_handler"]))
    q.add_argument("--cause", required=True, help=_(TEXT["help_cause"]))
    q.add_argument("--action", required=True, help=_(TEXT["help_action"]))
    q.add_argument("--at", default=None, help=_(TEXT["help_at"]))
    q.set_defaults(func=cmd_dispose)


class Client:
    """The local API of the agent that runs `site`."""

    def __init__(self, site, url: str | None = None):
        from edge_agent.metrics import parse_listen
        from edge_agent.secrets import read_secret
        self.site = site
        if url is None:
            host, port = parse_listen(site.console.listen, field="console.listen")
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
            url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.url = url.rstrip("/")
        self.token = read_secret(site.alarms.token_file, field="alarms.token_file", site=site)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else orjson.dumps(body),
                                     headers={"Authorization": f"Bearer {self.token.reveal()}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            try:
                data = orjson.loads(exc.read())
            except orjson.JSONDecodeError:
                data = {"error": f"HTTP {exc.code} {exc.reason}"}
            return exc.code, data if isinstance(data, dict) else {"error": str(data)}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return 0, {"error": _say("unreachable", url=self.url, reason=getattr(reason, "strerror", None) or reason,
                                     site=self.site.source)}


def _site(args):
    from edge_agent.config import load_site
    return load_site(args.config)


def _run(args, method: str, path: str, body: dict | None, done) -> int:
    client = Client(_site(args), args.url)
    status, data = client.call(method, path, body)
    if status != 200:
        error = data.get("error")
        if data.get("template"):                  # the book's message, in this command's language
            error = _(data["template"]).format(**data.get("values") or {})
        print(f"edge-agent: alarms: {error}", file=sys.stderr)
        return 1 if 400 <= status < 500 else 2
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        done(client, data)
    return 0


def _text(t: float | None, tz) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S")


def _zone(site):
    from edge_agent.profile import load_profile
    from edge_agent.profile.timefmt import zone_of
    return zone_of(site, load_profile(site.profile, base=site.base_dir))


def _colour(name: str) -> str:
    return f"{name} {LEVEL_NAMES_ZH[LEVELS.index(name)]}" if name in LEVELS[1:] else name


def _num(v) -> str:
    return "-" if v is None else f"{v:g}"


def _row(a: dict, tz) -> tuple:
    level = _colour(a["max_level"]) + ("" if a["end"] is not None or a["level"] == a["max_level"]
                                       else f" (now {a['level']})")
    point = a["item"] if a["item"] is not None else f"{a['device']}/{a['point']}"
    unit = f" {a['unit']}" if a.get("unit") else ""
    return (str(a["id"]), level, a["state"], _(TEXT["overdue"]) if a["overdue"] else _text(a["deadline"], tz)[11:],
            _text(a["start"], tz), _text(a["end"], tz)[11:] if a["end"] else "-", point, a["location"] or "-",
            _num(a["value"]), _num(a["extreme"]) + unit)


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(pad(c, w) for c, w in zip(r, widths)).rstrip() for r in rows]


def cmd_list(args) -> int:
    def done(client, data) -> None:
        alarms = data["alarms"]
        if not alarms:
            print(_say("none", state=args.state))
            return
        tz = _zone(client.site)
        for line in _table([tuple(_(h) for h in TEXT["header"])] + [_row(a, tz) for a in alarms]):
            print(line)
    return _run(args, "GET", f"/api/alarms?state={args.state}", None, done)


def _show(client, a: dict) -> None:
    tz = _zone(client.site)
    for key, value in a.items():
        if key == "disposal" and value:
            for k, v in value.items():
                print(f"disposal.{k}: {_text(v, tz) if k.endswith('_at') else v}")
            continue
        if key in ("start", "end", "deadline", "acked_at"):
            value = _text(value, tz)
        elif key in ("level", "max_level"):
            value = _colour(value)
        print(f"{key}: {'-' if value is None else value}")


def cmd_show(args) -> int:
    return _run(args, "GET", f"/api/alarms/{args.id}", None, _show)


def cmd_ack(args) -> int:
    return _run(args, "POST", f"/api/alarms/{args.id}/ack", {"by": args.by},
                lambda client, a: print(_say("acked", id=a["id"], by=a["acked_by"])))


def parse_at(text: str, tz) -> float:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            t = dt.datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return (t.replace(tzinfo=tz) if tz is not None else t.astimezone()).timestamp()
    raise ValueError(_say("bad_at", text=text))


def cmd_dispose(args) -> int:
    body = {"handler": args.handler, "cause": args.cause, "action": args.action}
    if args.at is not None:
        try:
            body["handled_at"] = parse_at(args.at, _zone(_site(args)))
        except ValueError as exc:
            print(f"edge-agent: alarms: {exc}", file=sys.stderr)
            return 1
    return _run(args, "POST", f"/api/alarms/{args.id}/dispose", body,
                lambda client, a: print(_say("disposed", id=a["id"], handler=a["disposal"]["handler"])))
