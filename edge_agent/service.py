"""Operating the agent as a service: `edge-agent install-service` and `edge-agent status`.

Library calls (what the commands skin, and what tests reach directly):

- `unit_text()`: the packaged systemd unit; `render_unit(exe, config_dir)` points its
  ExecStart (and its credential sources) at an installed agent and site folder.
- `install_service(unit_dir, config_dir, exe)` writes the unit, creates the site folder
  and `site.yaml` from the packaged example *only if absent* (never overwrites), and
  returns the lines to print, next steps included.
- `fetch_status(url)` reads `/health` and `/metrics` of a running agent into a dict;
  `format_status(status)` turns it into the readable summary `edge-agent status` prints.

`register(subparsers)` adds both commands; each handler returns the exit status:
install-service 0 (or 2 when it cannot write), status 0 when the agent reports "ok"
and 1 otherwise (degraded, down or unreachable), so scripts can use it as a check.
"""
from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from edge_agent.buffer.tools import format_size
from edge_agent.errors import EdgeAgentError
from edge_agent.fsutil import make_dirs
from edge_agent.i18n import N_, _
from edge_agent.units import format_age

UNIT_NAME = "edge-agent.service"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_CONFIG_DIR = "/etc/edge-agent"
DEFAULT_EXE = "/opt/edge-agent/bin/edge-agent"
DEFAULT_URL = "http://127.0.0.1:9108"
EXAMPLE_SITE = "example-site.yaml"


# ------------------------------------------------------------------ install-service

def unit_text() -> str:
    """The unit file shipped with this version (package data in a wheel, systemd/ in a checkout)."""
    try:
        res = importlib.resources.files("edge_agent.systemd").joinpath(UNIT_NAME)
        if res.is_file():
            return res.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    checkout = Path(__file__).resolve().parents[1] / "systemd" / UNIT_NAME
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise EdgeAgentError(f"the unit file {UNIT_NAME} is not part of this installation; reinstall edge-agent "
                         "from a wheel or a source checkout")


def example_site_text() -> str:
    try:
        return importlib.resources.files("edge_agent.data").joinpath(EXAMPLE_SITE).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        raise EdgeAgentError(f"the example site file {EXAMPLE_SITE} is not part of this installation; "
                             "reinstall edge-agent") from None


def default_exe() -> str:
    """The edge-agent script of the environment this command runs from, else the documented path."""
    here = Path(sys.executable).parent / "edge-agent"
    return str(here) if here.is_file() and os.access(here, os.X_OK) else DEFAULT_EXE


def render_unit(exe: str = DEFAULT_EXE, config_dir: str = DEFAULT_CONFIG_DIR, text: str | None = None) -> str:
    """The unit with ExecStart running `exe` on `config_dir`/site.yaml (credentials read from there too)."""
    text = unit_text() if text is None else text
    site = f"{config_dir.rstrip('/')}/site.yaml"
    out = []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={exe} run -c {site}"
        elif line.startswith("LoadCredential=") and config_dir.rstrip("/") != DEFAULT_CONFIG_DIR:
            line = line.replace(f"{DEFAULT_CONFIG_DIR}/", f"{config_dir.rstrip('/')}/")
        out.append(line)
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install_service(unit_dir: str = DEFAULT_UNIT_DIR, config_dir: str = DEFAULT_CONFIG_DIR,
                    exe: str | None = None) -> list[str]:
    """Write the unit and (if absent) the site file; return what was done and the next steps."""
    exe = exe or default_exe()
    udir, cdir = Path(unit_dir), Path(config_dir)
    unit_path, site_path = udir / UNIT_NAME, cdir / "site.yaml"
    lines = []
    try:
        make_dirs(udir)
        existed = unit_path.exists()
        _write_atomic(unit_path, render_unit(exe, str(cdir)), 0o644)
        lines.append(f"{'updated' if existed else 'wrote'} {unit_path} (ExecStart={exe} run -c {site_path})")
        make_dirs(cdir, 0o755)
        if site_path.exists():
            lines.append(f"kept {site_path} (an existing site file is never overwritten)")
        else:
            # O_EXCL: a site file that appeared meanwhile is not overwritten either
            with open(site_path, "x", encoding="utf-8") as f:
                f.write(example_site_text())
            os.chmod(site_path, 0o644)
            lines.append(f"created {site_path} from the example; edit it for this site")
    except PermissionError as exc:
        raise EdgeAgentError(f"install-service: permission denied writing {exc.filename}; run it as root "
                             "(sudo)") from None
    except OSError as exc:
        raise EdgeAgentError(f"install-service: cannot write {exc.filename}: {exc.strerror}") from None
    if re.match(r"/(home|root)(/|$)", exe):
        lines.append(f"warning: {exe} is under /home or /root, which the unit hides (ProtectHome=yes); "
                     f"install into a venv in /opt/edge-agent and run install-service from there")
    if not os.access(exe, os.X_OK):
        lines.append(f"warning: {exe} does not exist or is not executable; pass --exec PATH")
    lines += [
        "",
        "next steps:",
        f"  1. edit {site_path} (site, devices, forward), then check it:",
        f"       {exe} check -c {site_path}",
        f"  2. secrets stay out of the site file: put each in {cdir}/ owned by root, mode 0600,",
        f"     e.g. install -m 600 /dev/null {cdir}/mqtt.pass, then write the password into it;",
        "     the service receives them as systemd credentials (password_file: mqtt.pass);",
        "     certificates (ca.pem) and point tables stay world-readable (mode 0644)",
        "  3. systemctl daemon-reload && systemctl enable --now edge-agent",
        "  4. edge-agent status    (logs: journalctl -u edge-agent -f)",
    ]
    return lines


def cmd_install_service(args: argparse.Namespace) -> int:
    for line in install_service(args.unit_dir, args.config_dir, args.exec):
        print(line)
    return 0


# ------------------------------------------------------------------ status

def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:  # 503 carries the health document too
        return e.code, e.read()


def _metric_values(text: str) -> dict[str, dict[tuple, float]]:
    from prometheus_client.parser import text_string_to_metric_families
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def fetch_status(url: str = DEFAULT_URL, timeout: float = 3.0) -> dict:
    """`{"url", "health": {...} | None, "metrics": {name: {labels: value}}, "error": str | None}`."""
    url = url.rstrip("/")
    out: dict = {"url": url, "health": None, "metrics": {}, "error": None}
    try:
        code, body = _get(url + "/health", timeout)
        out["health"] = json.loads(body)
        if not isinstance(out["health"], dict) or "state" not in out["health"]:
            raise ValueError("no 'state' in the answer")
        code, body = _get(url + "/metrics", timeout)
        if code == 200:
            out["metrics"] = _metric_values(body.decode("utf-8"))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        out["error"] = _("cannot reach {url} ({reason}); is the service running? try: systemctl status "
                         "edge-agent").format(url=url, reason=getattr(reason, "strerror", None) or reason)
    except ValueError as exc:
        out["error"] = _("{url}/health did not answer like edge-agent ({reason}); check --url").format(
            url=url, reason=exc)
    return out


def _by_label(metrics: dict, name: str, label: str) -> dict[str, float]:
    return {dict(k).get(label, ""): v for k, v in metrics.get(name, {}).items()}


def _scalar(metrics: dict, name: str) -> float | None:
    return metrics.get(name, {}).get(())


def format_status(st: dict) -> list[str]:
    """The readable summary of `fetch_status()`: state, devices, alarms, buffer, uplink."""
    if st["error"]:
        return [f"edge-agent {st['url']}: {_('DOWN')}", f"  {st['error']}"]
    h, m = st["health"], st["metrics"]
    now = h.get("time") or time.time()
    state = {"ok": N_("OK"), "degraded": N_("DEGRADED"), "down": N_("DOWN")}.get(h.get("state"))
    lines = [f"edge-agent {st['url']}: {_(state) if state else str(h.get('state')).upper()}"]
    lines += [f"  - {r}" for r in h.get("reasons") or []]
    devices = h.get("devices") or {}
    online = sum(1 for d in devices.values() if d.get("online"))
    lines.append(_("devices: {online}/{total} online").format(online=online, total=len(devices)))
    polls = _by_label(m, "edge_agent_device_polls_total", "device")
    errors = _by_label(m, "edge_agent_device_errors_total", "device")
    latency = _by_label(m, "edge_agent_device_poll_latency_seconds", "device")
    width = max((len(n) for n in devices), default=0)
    for name, d in devices.items():
        state = {True: _("online"), False: _("OFFLINE")}.get(d.get("online"), _("unknown"))
        last = d.get("last_poll")
        parts = [f"  {name:<{width}}  {state:<7}", _("last poll {age} ago").format(age=format_age(now - last))
                 if last else _("no poll yet")]
        n_polls, n_err = polls.get(name, d.get("polls")), errors.get(name, d.get("errors"))
        if n_polls is not None:
            parts.append(_("polls {n}").format(n=f"{n_polls:.0f}"))
        if n_err is not None:
            parts.append(_("errors {n}").format(n=f"{n_err:.0f}"))
        if name in latency:
            parts.append(_("latency {ms} ms").format(ms=f"{latency[name] * 1000:.0f}"))
        lines.append("  ".join(parts))
    alarms, points = _scalar(m, "edge_agent_alarms_active"), _scalar(m, "edge_agent_points")
    if alarms is not None:
        lines.append(_("alarms active: {n}").format(n=f"{alarms:.0f}")
                     + (_(" of {n} points").format(n=f"{points:.0f}") if points is not None else ""))
    rows = _scalar(m, "edge_agent_buffer_rows")
    if rows is not None:
        buf = _("buffer: {n} messages waiting").format(n=f"{rows:.0f}")
        size, oldest = _scalar(m, "edge_agent_buffer_bytes"), _scalar(m, "edge_agent_buffer_oldest_age_seconds")
        if size is not None:
            buf += f", {format_size(size)}"
        if oldest:
            buf += _(", oldest {age}").format(age=format_age(oldest))
        drops = {t: v for t, v in _by_label(m, "edge_agent_buffer_dropped_total", "type").items() if v}
        buf += _("; dropped: ") + (", ".join(f"{t} {v:.0f}" for t, v in sorted(drops.items())) if drops
                                   else _("none"))
        lines.append(buf)
    connected = _by_label(m, "edge_agent_sink_connected", "sink")
    if connected:
        inflight = _by_label(m, "edge_agent_sink_inflight", "sink")
        acked = _by_label(m, "edge_agent_sink_acked_total", "sink")
        reconnects = _by_label(m, "edge_agent_sink_reconnects_total", "sink")
        sinks = []
        for s in sorted(connected):
            desc = f"{s} {_('connected') if connected[s] else _('DISCONNECTED')}"
            extra = [f"{k} {d[s]:.0f}" for k, d in ((_("acked"), acked), (_("inflight"), inflight),
                                                    (_("reconnects"), reconnects)) if s in d]
            sinks.append(desc + (f" ({', '.join(extra)})" if extra else ""))
        lines.append(_("uplink: ") + "; ".join(sinks))
    elif m:
        lines.append(_("uplink: no sink configured"))
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    url = args.url
    if url is None and args.config:
        from edge_agent.config import load_site
        from edge_agent.metrics import parse_listen
        host, port = parse_listen(load_site(args.config).metrics.listen)
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    st = fetch_status(url or DEFAULT_URL, timeout=args.timeout)
    if args.json:
        metrics = {name: [{"labels": dict(k), "value": v} for k, v in by.items()] for name, by in st["metrics"].items()}
        print(json.dumps({**st, "metrics": metrics}, ensure_ascii=False))
    else:
        for line in format_status(st):
            print(line)
    return 0 if not st["error"] and st["health"].get("state") == "ok" else 1


# ------------------------------------------------------------------ CLI

def register(sub) -> None:
    """Add `install-service` and `status` to the `edge-agent` subcommands."""
    i = sub.add_parser("install-service", help="install the systemd unit and a site file to start from")
    i.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR, metavar="DIR", help="default %(default)s")
    i.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, metavar="DIR", help="default %(default)s")
    i.add_argument("--exec", default=None, metavar="PATH",
                   help=f"the edge-agent the unit runs (default: this one, else {DEFAULT_EXE})")
    i.set_defaults(func=cmd_install_service)

    s = sub.add_parser("status", help="summary of a running agent from its /health and /metrics")
    s.add_argument("--url", default=None, help=f"metrics endpoint (default {DEFAULT_URL}, or from -c)")
    s.add_argument("-c", "--config", default=None, metavar="SITE.yaml", help="take the address from metrics.listen")
    s.add_argument("--timeout", type=float, default=3.0, metavar="S")
    s.add_argument("--json", action="store_true", help="print what was read as JSON")
    s.set_defaults(func=cmd_status)

