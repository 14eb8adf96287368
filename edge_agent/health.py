"""The agent's state as plain data: for /metrics, /health, the watchdog and `edge-agent status`.

Read at scrape time only, in the event loop; nothing here runs per poll.
"""
from __future__ import annotations

import time

from edge_agent import registry

ALARM_BITS = 1 | 2          # alarm, cut-off
CLOCK_STALL = 10.0          # seconds without a clock tick before the pipeline counts as wedged


def pipeline_alive(agent) -> bool:
    """True while the clock loop turns and no driver or sink task died of a bug."""
    if time.monotonic() - agent.last_clock > CLOCK_STALL:
        return False
    tasks = [t for t in getattr(agent, "driver_tasks", []) if t is not None] + list(getattr(agent, "sink_tasks", []))
    return not any(t.done() and not t.cancelled() for t in tasks)


def _device(dev, drv, st) -> dict:
    out = {
        **registry.driver(dev.driver).standard_counters(drv.counters),
        "online": bool(st.online),
        "last_poll": st.last_frame or None,
        "reason": st.reason,
    }
    cadence = getattr(drv, "cadence", None)
    if cadence is not None and cadence.dense is not None:      # poll_in_warning
        out["in_warning"] = cadence.warning
        out["dense_polls"] = drv.counters.get("dense_polls", 0)
    return out


def _sinks(agent) -> dict:
    out = {}
    for s in agent.sinks:
        spec = agent.sink_specs[s.name]
        out[s.name] = {**spec.standard_counters(s.counters), "connected": bool(s.connected), "trouble": s.trouble}
        if getattr(s, "broker", None):
            out[s.name]["broker"] = s.broker
    return out


def _health(agent, devices: dict, sinks: dict, buffer: dict) -> dict:
    reasons = []
    if not pipeline_alive(agent):
        return {"state": "down", "reasons": ["pipeline stalled or a task died (see the log)"]}
    offline = [name for name, d in devices.items() if not d["online"]]
    if devices and len(offline) == len(devices):
        return {"state": "down", "reasons": ["no device answers: " + ", ".join(offline)]}
    if offline:
        reasons.append("devices offline: " + ", ".join(offline))
    for name, sink in sinks.items():
        if sink["trouble"]:
            kind = agent.sink_specs[name].kind
            reasons.append(sink["trouble"] if name == kind else f"sink {name}: {sink['trouble']}")
    watch = getattr(agent, "clock_watch", None)
    if watch is not None and watch.reason:
        reasons.append(f"clock: {watch.reason}")
    if buffer.get("disk_error"):
        reasons.append(f"buffer disk error: {buffer['disk_error']}")
    return {"state": "degraded" if reasons else "ok", "reasons": reasons}


def snapshot(agent) -> dict:
    devices = {dev.name: _device(dev, drv, st)
               for dev, drv, st in zip(agent.site.devices, agent.drivers, agent.devices)}
    sinks = _sinks(agent)
    b = agent.buffer.stats()
    buffer = {"rows": b.get("rows", 0), "bytes": b.get("bytes", 0), "oldest_age": b.get("oldest_age", 0.0),
              "drops": b.get("drops", {}), "backlog": b.get("backlog", {}), "disk_error": b.get("disk_error")}
    status = agent.kernel.status
    alarms = sum(1 for s in status if s & ALARM_BITS)
    return {
        "gateway": agent.site.site.gateway,
        "devices": devices,
        "sinks": sinks,
        "buffer": buffer,
        "kernel": {"alarms_active": alarms, "points": len(agent.catalog), "rejected": agent.kernel.rejected},
        "alarms": agent.alarms.metrics() if getattr(agent, "alarms", None) is not None else None,
        "health": _health(agent, devices, sinks, buffer),
        "uptime_s": round(time.monotonic() - agent.started, 1),
        "reloads": agent.reloads,
    }
