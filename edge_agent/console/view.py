"""The one adapter between the console and the agent: everything the pages show, as plain data.

No other console module touches the agent.  When the agent's insides move
(the Pipeline carved out of Agent, the alarm book, graded levels), this file
follows and the pages do not change.  Everything here runs in the agent's
event loop, at page or live-update time, never per poll.
"""
from __future__ import annotations

import math
import time
from array import array
from pathlib import Path

LEVELS = ("none", "blue", "yellow", "orange", "red")
LEGACY = {2: 4, 1: 3}           # status bit -> level when the kernel has no level array: cut-off red, alarm orange
FAULT_BITS = 16 | 128
SECRET_WORDS = ("password", "token", "secret")


class View:
    """Read-only access to one running agent (see the module docstring)."""

    def __init__(self, agent):
        self.agent = agent

    # -------------------------------------------------------------- identity and catalogue

    @property
    def site(self):
        return self.agent.site

    @property
    def catalog(self):
        return self.agent.catalog

    @property
    def book(self):
        """The alarm book (CONTRACT-web-alarms-console.md), or None when the agent has none."""
        alarms = getattr(self.agent, "alarms", None)          # the agent's wiring holds the book
        return getattr(alarms, "book", alarms)

    def title(self) -> dict:
        s = self.site.site
        return {"mine_name": s.mine_name, "mine_code": s.mine_code, "gateway": s.gateway}

    def point_codes(self) -> list[str]:
        return [rp.code for rp in self.catalog.points]

    def device_index(self, name: str) -> int | None:
        for i, d in enumerate(self.site.devices):
            if d.name == name:
                return i
        return None

    def find_point(self, device: str, point_id: str):
        """The ResolvedPoint `device`/`point_id` (derived points included), or None."""
        di = self.device_index(device)
        if di is None:
            return None
        for rp in self.catalog.points:
            if rp.device == di and rp.id == point_id:
                return rp
        return None

    def points_of(self, di: int) -> list:
        """A device's points, derived condition points last."""
        return [rp for rp in self.catalog.points if rp.device == di]

    # -------------------------------------------------------------- live values

    def values(self) -> array:
        return self.agent.kernel.value

    def statuses(self) -> array:
        return self.agent.kernel.status

    def level_of(self, i: int) -> int:
        lv = getattr(self.agent.kernel, "level", None)
        if lv is not None:
            return int(lv[i])
        s = int(self.agent.kernel.status[i])
        return max((lvl for bit, lvl in LEGACY.items() if s & bit), default=0)

    def point_state(self, rp) -> dict:
        k = self.agent.kernel
        i = rp.index
        v, s = k.value[i], int(k.status[i])
        return {"value": None if math.isnan(v) else v, "status": s, "level": self.level_of(i),
                "time": None if math.isnan(k.time[i]) else k.time[i], "text": self.value_text(rp, v)}

    @staticmethod
    def value_text(rp, v: float) -> str:
        if math.isnan(v):
            return "-"
        if rp.kind == "switch" and (rp.on_text or rp.off_text):
            return rp.on_text if v else rp.off_text
        return f"{v:.{rp.decimals}f}"

    def status_names(self, bits: int) -> list[str]:
        table = self.agent.profile.status_bits
        return [table[b] for b in sorted(table) if bits & b]

    def offline_ranges(self) -> list[tuple[int, int]]:
        """Global index ranges [start, stop) of the points of devices that do not answer now."""
        out = []
        for di, st in enumerate(self.agent.devices):
            pts = self.catalog.by_device[di] if di < len(self.catalog.by_device) else []
            if st.online is False and pts:
                out.append((pts[0].index, pts[-1].index + 1))
        return out

    def thresholds(self, rp) -> list[dict]:
        """The lines to draw on a point's trend: {"name", "value", "level"}, each configured one."""
        p = rp.cfg
        out = []
        for name, value, level in (("warn.high", p.warn.high, 2), ("warn.low", p.warn.low, 2),
                                   ("alarm.high", p.alarm.high, 3), ("alarm.low", p.alarm.low, 3),
                                   ("cutoff.high", p.cutoff.high, 4), ("cutoff.low", p.cutoff.low, 4)):
            if value is not None:
                out.append({"name": name, "value": float(value), "level": level})
        levels = getattr(p, "levels", None)
        for li, colour in enumerate(LEVELS[1:], start=1):
            spec = getattr(levels, colour, None) if levels is not None else None
            for side in ("high", "low"):
                value = getattr(spec, side, None) if spec is not None else None
                if value is not None:
                    out.append({"name": f"levels.{colour}.{side}", "value": float(value), "level": li})
        return out

    # -------------------------------------------------------------- devices, uplink, buffer

    def devices(self) -> list[dict]:
        a = self.agent
        out = []
        for di, (dev, st) in enumerate(zip(self.site.devices, a.devices)):
            drv = a.drivers[di] if di < len(a.drivers) else None
            c = getattr(drv, "counters", {}) or {}
            out.append({"name": dev.name, "driver": dev.driver, "location": dev.location,
                        "online": st.online, "reason": st.reason, "since": st.since,
                        "last_poll": st.last_frame or None, "points": len(self.catalog.by_device[di]),
                        "polls": c.get("polls", c.get("reads", c.get("frames", 0))),
                        "errors": c.get("errors", 0) + c.get("exceptions", 0) + c.get("garbage", 0),
                        "system": getattr(dev, "system", None)})
        return out

    def systems(self) -> list[dict]:
        """The monitoring systems (one safety-monitoring system when the site names none)."""
        declared = getattr(self.site, "systems", None)
        if declared:
            return [{"name": s.name, "kind": s.kind, "code": s.system_code} for s in declared]
        s = self.site.site
        return [{"name": s.system_name, "kind": "safety-monitoring", "code": s.system_code}]

    def uplink(self) -> dict:
        a = self.agent
        out: dict = {"mqtt": None, "files": None}
        if a.mqtt is not None:
            c = a.mqtt.counters
            out["mqtt"] = {"connected": bool(a.mqtt.connected), "broker": a.mqtt.broker,
                           "acked": c.get("acked", 0), "inflight": c.get("inflight", 0),
                           "reconnects": c.get("reconnects", 0)}
        if a.files is not None:
            f = a.files
            st = f.stats()
            up = st.get("upload") or {}
            out["files"] = {"dir": str(f.directory), "written": st["files_written"], "failing": st["failing"],
                            "upload_waiting": up.get("waiting"), "upload_failing": up.get("failing")}
        return out

    def buffer(self) -> dict:
        b = self.agent.buffer.stats()
        return {"rows": b.get("rows", 0), "bytes": b.get("bytes", 0), "oldest_age": b.get("oldest_age", 0.0),
                "backlog": b.get("backlog", {}), "drops": b.get("drops", {}), "seq": b.get("next_seq", 1) - 1,
                "disk_error": b.get("disk_error")}

    def last_records(self) -> list[dict]:
        """The newest record of each type the spec-file sink wrote: {"type", "time"}, newest first."""
        f = self.agent.files
        last = getattr(f, "_last_second", None) or {}
        return sorted(({"type": t, "time": float(s)} for t, s in last.items()), key=lambda r: -r["time"])

    def health(self) -> dict:
        from edge_agent import health
        return health.snapshot(self.agent)["health"]

    # -------------------------------------------------------------- configuration

    def history_path(self) -> Path:
        cfg = self.site.console
        if cfg is not None and cfg.history:
            return self.site.path(cfg.history)
        return self.site.path(self.site.buffer.path).parent / "console-history.bin"

    def effective_config(self) -> dict:
        """The running site file with defaults filled in; secrets are never in it (only file names)."""
        data = self.site.model_dump(mode="json", exclude={"source"})
        return _redact(data)

    def now(self) -> float:
        return time.time()


def _redact(obj):
    if isinstance(obj, dict):
        return {k: ("***" if any(w in k for w in SECRET_WORDS) and not k.endswith("_file") and obj[k]
                    else _redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj
