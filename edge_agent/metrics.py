"""Prometheus text endpoint (`/metrics`) and a health check (`/health`), off the hot path.

Nothing here is updated per poll: at scrape time `SnapshotCollector` calls a
`snapshot()` callable and turns the plain dict it returns into metric families.
The dict (every key optional; missing or None values are left out):

    {"devices": {name: {"polls", "errors", "timeouts", "skipped",      # counters
                        "dense_polls",                                 # counter (poll_in_warning)
                        "online", "in_warning", "latency_s", "last_poll"}},   # bool, bool, s, unix time
     "sinks":   {name: {"published", "acked", "reconnects",            # counters
                        "inflight", "connected"}},                     # gauge, bool
     "buffer":  {"rows", "bytes", "oldest_age", "drops": {type: n}, "backlog": {sink: n}},
     "kernel":  {"alarms_active", "points"},
     "alarms":  {"open": {colour: n}, "overdue", "unacknowledged", "escalations"},   # the alarm book
     "health":  {"state": "ok" | "degraded" | "down", "reasons": [str, ...]},
     "gateway": "gw-01"}

`MetricsServer(listen, snapshot)` is an async context manager that serves both
paths from a thread.  When entered inside a running loop, `snapshot()` is called
*in that loop* (so it may read the agent's state without locks) and must return
fresh plain data; if the loop does not answer within `loop_timeout` seconds,
`/health` answers 503 with state "down" ("event loop not responding") and
`/metrics` answers 503.  `/health` answers 200 only when the state is "ok", so
`curl -fsS http://127.0.0.1:9108/health` works as a check.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import logging
import re
import socket
import threading
import time
from typing import Any, Callable, Iterator

import orjson
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from edge_agent import __version__
from edge_agent.errors import EdgeAgentError

log = logging.getLogger("edge_agent.metrics")

DEFAULT_LISTEN = "127.0.0.1:9108"
HEALTH_STATES = ("ok", "degraded", "down")

# (snapshot key, metric name, help) per family; counters get "_total" from prometheus-client
_DEVICE_COUNTERS = (("polls", "edge_agent_device_polls", "Polls completed per device"),
                    ("errors", "edge_agent_device_errors", "Polls that failed (exception, refused, decode)"),
                    ("timeouts", "edge_agent_device_timeouts", "Polls that timed out"),
                    ("skipped", "edge_agent_device_skipped", "Polls skipped because the previous one overran"),
                    ("dense_polls", "edge_agent_device_dense_polls", "Polls made at the poll_in_warning period"))
_DEVICE_GAUGES = (("online", "edge_agent_device_online", "1 when the device answers, 0 when it does not"),
                  ("in_warning", "edge_agent_device_in_warning",
                   "1 while the device polls at its poll_in_warning period"),
                  ("latency_s", "edge_agent_device_poll_latency_seconds", "Duration of the last poll"),
                  ("last_poll", "edge_agent_device_last_poll_timestamp_seconds", "Unix time of the last frame"))
_SINK_COUNTERS = (("published", "edge_agent_sink_published", "Messages handed to the sink"),
                  ("acked", "edge_agent_sink_acked", "Messages the sink confirmed (PUBACK, file renamed)"),
                  ("reconnects", "edge_agent_sink_reconnects", "Connections re-established"))
_SINK_GAUGES = (("inflight", "edge_agent_sink_inflight", "Messages sent and not yet confirmed"),
                ("connected", "edge_agent_sink_connected", "1 when the sink is connected"))
_BUFFER_GAUGES = (("rows", "edge_agent_buffer_rows", "Messages waiting in the buffer"),
                  ("bytes", "edge_agent_buffer_bytes", "Body bytes waiting in the buffer"),
                  ("oldest_age", "edge_agent_buffer_oldest_age_seconds", "Age of the oldest waiting message"))
_KERNEL_GAUGES = (("alarms_active", "edge_agent_alarms_active", "Points in alarm or cut-off now"),
                  ("points", "edge_agent_points", "Points configured"))
_BOOK = (("overdue", "edge_agent_alarms_overdue", "Alarms past their time to acknowledge", GaugeMetricFamily),
         ("unacknowledged", "edge_agent_alarms_unacknowledged", "Alarms not yet acknowledged or disposed of",
          GaugeMetricFamily),
         ("escalations", "edge_agent_alarm_escalations", "Alarms escalated for a missed deadline",
          CounterMetricFamily))


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    return float(v)


def _labelled(snap: dict, label: str, spec: tuple, family: type) -> Iterator[Metric]:
    for key, name, doc in spec:
        fam = family(name, doc, labels=[label])
        for who, values in snap.items():
            v = _num((values or {}).get(key))
            if v is not None:
                fam.add_metric([str(who)], v)
        yield fam


def families(snap: dict) -> list[Metric]:
    """The metric families for one snapshot (see the module docstring for the keys)."""
    out: list[Metric] = []
    info = {"version": __version__}
    if snap.get("gateway"):
        info["gateway"] = str(snap["gateway"])
    build = InfoMetricFamily("edge_agent_build", "Version (and gateway) of this agent")
    build.add_metric([], info)
    out.append(build)
    devices = snap.get("devices") or {}
    out += _labelled(devices, "device", _DEVICE_COUNTERS, CounterMetricFamily)
    out += _labelled(devices, "device", _DEVICE_GAUGES, GaugeMetricFamily)
    sinks = snap.get("sinks") or {}
    out += _labelled(sinks, "sink", _SINK_COUNTERS, CounterMetricFamily)
    out += _labelled(sinks, "sink", _SINK_GAUGES, GaugeMetricFamily)
    buf = snap.get("buffer") or {}
    for key, name, doc in _BUFFER_GAUGES:
        if _num(buf.get(key)) is not None:
            out.append(GaugeMetricFamily(name, doc, value=_num(buf[key])))
    drops = CounterMetricFamily("edge_agent_buffer_dropped", "Messages dropped by the size/age limits, by type",
                                labels=["type"])
    for typ, n in sorted((buf.get("drops") or {}).items()):
        drops.add_metric([str(typ)], float(n))
    out.append(drops)
    if buf.get("backlog"):
        out += _labelled({s: {"n": n} for s, n in buf["backlog"].items()}, "sink",
                         (("n", "edge_agent_buffer_backlog", "Messages a sink has not confirmed yet"),),
                         GaugeMetricFamily)
    kern = snap.get("kernel") or {}
    for key, name, doc in _KERNEL_GAUGES:
        if _num(kern.get(key)) is not None:
            out.append(GaugeMetricFamily(name, doc, value=_num(kern[key])))
    book = snap.get("alarms") or {}
    if book:
        out += _labelled({c: {"n": n} for c, n in (book.get("open") or {}).items()}, "level",
                         (("n", "edge_agent_alarms_open", "Open alarms in the alarm book, by current level"),),
                         GaugeMetricFamily)
        for key, name, doc, family in _BOOK:
            if _num(book.get(key)) is not None:
                out.append(family(name, doc, value=_num(book[key])))
    state = health_of(snap)["state"]
    h = GaugeMetricFamily("edge_agent_health", "1 for the current overall state", labels=["state"])
    for s in HEALTH_STATES:
        h.add_metric([s], 1.0 if s == state else 0.0)
    out.append(h)
    return out


class SnapshotCollector:
    """A prometheus-client collector that reads `snapshot()` at scrape time."""

    def __init__(self, snapshot: Callable[[], dict]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshot())


def health_of(snap: dict) -> dict:
    """`{"state", "reasons"}` from a snapshot; an unknown or missing state counts as "down"."""
    h = snap.get("health") or {}
    state = h.get("state")
    reasons = [str(r) for r in (h.get("reasons") or [])]
    if state not in HEALTH_STATES:
        reasons = reasons or [f"no health state in the snapshot (got {state!r})"]
        state = "down"
    return {"state": state, "reasons": reasons}


def health_document(snap: dict) -> dict:
    """What `/health` returns: the health plus a compact per-device summary."""
    doc = health_of(snap)
    doc["time"] = round(time.time(), 3)
    doc["devices"] = {
        str(name): {k: d.get(k) for k in ("online", "last_poll", "polls", "errors", "skipped", "reason") if k in d}
        for name, d in (snap.get("devices") or {}).items() if isinstance(d, dict)}
    return doc


def parse_listen(text: str, *, field: str = "metrics.listen") -> tuple[str, int]:
    """'127.0.0.1:9108', '[::1]:9108', 'localhost:9108' or '9108' (loopback) -> (host, port).

    Errors name `field` (the site-file key the text came from)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        host, port = "127.0.0.1", text
    else:
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^\s:\[\]]+):(\d+)", text)
        if not m:
            raise EdgeAgentError(f"{field}: {text!r} is not host:port; write 127.0.0.1:9108 "
                                 "(or [::1]:9108)")
        host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 <= int(port) <= 65535:
        raise EdgeAgentError(f"{field}: port {port} is out of range (1-65535)")
    return host, int(port)


def exposure_warning(host: str) -> str | None:
    """A warning when `metrics.listen` is reachable from the network, else None."""
    import ipaddress
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (f"metrics.listen: {host} is reachable from the network; /metrics and /health have no "
            "authentication (firewall the port or listen on 127.0.0.1)")


class _LoopStalled(Exception):
    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_HTTPServer"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        owner = self.server.owner
        if path == "/health":
            try:
                doc = health_document(owner.take_snapshot())
            except _LoopStalled:
                doc = {"state": "down", "reasons": [f"event loop not responding for {owner.loop_timeout:g}s"],
                       "time": round(time.time(), 3), "devices": {}}
            except Exception as exc:  # a bug in snapshot(): say so rather than look healthy
                log.exception("metrics: snapshot failed")
                doc = {"state": "down", "reasons": [f"snapshot failed: {exc}"], "time": round(time.time(), 3),
                       "devices": {}}
            self._send(200 if doc["state"] == "ok" else 503, "application/json",
                       orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS) + b"\n")
        elif path == "/metrics":
            try:
                body = generate_latest(owner.registry)
            except _LoopStalled:
                self._send(503, "text/plain; charset=utf-8", b"event loop not responding\n")
                return
            except Exception as exc:
                log.exception("metrics: snapshot failed")
                self._send(500, "text/plain; charset=utf-8", f"snapshot failed: {exc}\n".encode())
                return
            self._send(200, CONTENT_TYPE_LATEST, body)
        elif path == "/":
            self._send(200, "text/plain; charset=utf-8", b"edge-agent: /metrics /health\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found; try /metrics or /health\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one log line per scrape would flood the journal


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: "MetricsServer"


class MetricsServer:
    """Serves `/metrics` and `/health` on `listen` from a background thread.

    `async with MetricsServer("127.0.0.1:0", agent_snapshot) as srv: srv.url` gives the
    bound address (port 0 picks a free one).  Entering raises `EdgeAgentError` (one line
    naming `metrics.listen`) when the address is malformed or cannot be bound.
    `start()`/`stop()` do the same without a loop (snapshot then runs in the server thread).
    """

    def __init__(self, listen: str, snapshot: Callable[[], dict], *, loop_timeout: float = 2.0,
                 process_metrics: bool = True):
        self.listen = listen
        self.host, self.port = parse_listen(listen)
        self.snapshot = snapshot
        self.loop_timeout = loop_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(self.take_snapshot))
        if process_metrics:  # process_resident_memory_bytes, cpu, open fds: read from /proc at scrape time
            ProcessCollector(registry=self.registry)
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def take_snapshot(self) -> dict:
        """`snapshot()`, run in the owning loop when there is one (from the server thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return self.snapshot()
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(self.snapshot())
                except BaseException as exc:
                    fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        try:
            return fut.result(self.loop_timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise _LoopStalled() from None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> "MetricsServer":
        self.loop = loop
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_cls = type("_Server", (_HTTPServer,), {"address_family": family})
        try:
            self._server = server_cls((self.host, self.port), _Handler)
        except OSError as exc:
            raise EdgeAgentError(f"metrics.listen: cannot listen on {self.listen}: {exc.strerror or exc}; "
                                 "another program may use the port: change metrics.listen or set "
                                 "metrics.enabled: false") from None
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics on %s/metrics, health on %s/health", self.url, self.url)
        warning = exposure_warning(self.host)
        if warning:
            log.warning("%s", warning)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(2)
        self._server = self._thread = None
        self.loop = None

    async def __aenter__(self) -> "MetricsServer":
        return self.start(asyncio.get_running_loop())

    async def __aexit__(self, *exc: object) -> None:
        # shutdown() waits for the serve loop; a handler may be waiting for this loop meanwhile
        await asyncio.to_thread(self.stop)
