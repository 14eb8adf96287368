"""GNSS speed and acceleration derived at the edge from a station's displacement series.

    m = Motion(window=3600, per=86400)        # change over the last hour, in mm per day
    speed, acc = m.update(t, (x, y, z))       # each a 3-tuple, or None while history is short
    saved = m.state(); m2 = Motion.restore(saved)   # JSON-able; a reload or restart carries on

Speed on each axis is the change of displacement since the sample nearest
`window` seconds ago, per `per` seconds: `(d(t) - d(t_i)) / (t - t_i) * per`.
Acceleration is the same difference of the speed series.  Both are exact for
a displacement that grows linearly (speed) or quadratically (acceleration)
when samples are evenly spaced, and the reference sample is the real one
(never interpolated), so irregular polls give the mean over the real span.

Until there is a sample at least `window / 2` old (after a start or a gap
longer than the history kept), the result is None, as the kernel's rate rules
wait for half a window.  A sample with a non-finite axis or a time not after
the last one is ignored (the previous result is returned).  History older
than `2 * window` is dropped, so memory is a few samples per window.
Pure: no clock, no I/O.
"""
from __future__ import annotations

import math
from collections import deque

Vec = tuple[float, float, float]


def _reference(series: deque, t: float, window: float):
    """The sample nearest `t - window` among those at least `window / 2` old (None: none)."""
    best = None
    target = t - window
    for s in series:
        if s[0] > t - window / 2:
            break
        if best is None or abs(s[0] - target) < abs(best[0] - target):
            best = s
    return best


def _diff(now: tuple, ref: tuple, per: float) -> Vec:
    dt = now[0] - ref[0]
    return tuple((now[k] - ref[k]) / dt * per for k in (1, 2, 3))


class Motion:
    """One station's displacement history and the speed and acceleration it gives."""

    def __init__(self, window: float, per: float = 86400.0):
        if not (window > 0 and per > 0):
            raise ValueError("window and per must be longer than 0s")
        self.window, self.per = float(window), float(per)
        self.disp: deque = deque()        # (t, x, y, z)
        self.speed: deque = deque()       # (t, sx, sy, sz)
        self.last: tuple[Vec | None, Vec | None] = (None, None)

    def _keep(self, series: deque, t: float) -> None:
        while series and series[0][0] < t - 2 * self.window:
            series.popleft()

    def update(self, t: float, disp: Vec) -> tuple[Vec | None, Vec | None]:
        """Add one displacement sample at time `t` (s); return (speed, acceleration)."""
        if not all(math.isfinite(v) for v in disp) or not math.isfinite(t) or \
                (self.disp and t <= self.disp[-1][0]):
            return self.last
        now = (float(t), *map(float, disp))
        self._keep(self.disp, t)
        self._keep(self.speed, t)
        ref = _reference(self.disp, t, self.window)
        self.disp.append(now)
        if ref is None:
            self.last = (None, None)
            return self.last
        speed = _diff(now, ref, self.per)
        s_now = (float(t), *speed)
        s_ref = _reference(self.speed, t, self.window)
        self.speed.append(s_now)
        acc = None if s_ref is None else _diff(s_now, s_ref, self.per)
        self.last = (speed, acc)
        return self.last

    def state(self) -> dict:
        """Everything `restore` needs, as plain lists and numbers."""
        return {"window": self.window, "per": self.per, "disp": [list(s) for s in self.disp],
                "speed": [list(s) for s in self.speed],
                "last": [None if v is None else list(v) for v in self.last]}

    @classmethod
    def restore(cls, state: dict, window: float | None = None, per: float | None = None) -> "Motion":
        """A Motion that carries on from `state`; a changed `window` or `per` starts afresh (the history
        is in the old units), as the kernel does for a changed rule."""
        w, p = state["window"], state["per"]
        if (window is not None and window != w) or (per is not None and per != p):
            return cls(window if window is not None else w, per if per is not None else p)
        m = cls(w, p)
        m.disp.extend(tuple(s) for s in state["disp"])
        m.speed.extend(tuple(s) for s in state["speed"])
        m.last = tuple(None if v is None else tuple(v) for v in state["last"])
        return m


def horizontal(v: Vec | None) -> float | None:
    """The horizontal magnitude sqrt(x^2 + y^2) of a vector (None stays None)."""
    return None if v is None else math.hypot(v[0], v[1])
