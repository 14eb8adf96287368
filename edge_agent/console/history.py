"""The trend history behind the point page: min/max per point, the last hour and the last 24 h, on disk.

`History(path, codes)` opens (or starts) one file for the site's points;
`sample(values, now)` is called once a second with the kernel's value array
and folds it into the open buckets; `series(i, now)` returns a point's
buckets, oldest first.  What it costs (figures in BENCHMARKS.md):

- memory: 4 float64 accumulators per point (32 B) plus a slot table per tier
  (8 B per slot, not per point) -- the rest of issue 19's 2 kB per point stays free;
- disk: FINE (10 s buckets, 1 h) and COARSE (2 min buckets, 24 h) rings of
  float32 (min, max) pairs, 8 B per point per slot: 8.6 kB per point
  (30 points: 260 kB; 10,000 points: 86 MB), written as one block per tier
  per bucket (one pwrite of 8 B x points every 10 s and every 2 min);
- CPU: two list comprehensions over the value array per second (about 0.15 us
  per point, measured in bench/console.py).

The file is a cache, not a record: never fsynced, started afresh when the
points change (their codes are fingerprinted in the header), and a bucket of
the wrong age is ignored, so after downtime the chart shows a gap.  Values
are sampled once a second: a spike shorter than a second between two samples
is not drawn (the alarm book keeps the extreme).
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import math
import operator
import os
import struct
from array import array
from pathlib import Path

log = logging.getLogger("edge_agent.console")

MAGIC = b"EAHIST1\0"
HEADER = struct.Struct("<8sI16s")         # magic, points, fingerprint of the point codes
HEADER_SIZE = 64
FINE = (10, 360)                          # (bucket seconds, slots): the last hour
COARSE = (120, 720)                       # the last 24 hours
INF = math.inf


def _fingerprint(codes: list[str]) -> bytes:
    return hashlib.blake2b("\n".join(codes).encode(), digest_size=16).digest()


class _Tier:
    """One ring of buckets in the file: slot = bucket % slots; each slot = bucket number, then (min, max) x n."""

    def __init__(self, fd: int, offset: int, n: int, width: int, slots: int):
        self.fd, self.offset, self.n, self.width, self.slots = fd, offset, n, width, slots
        self.slot_size = 8 + 8 * n
        self.size = self.slot_size * slots
        self.bucket = -1                                    # the bucket being accumulated
        self.mn = array("d", [INF]) * n
        self.mx = array("d", [-INF]) * n
        raw = bytearray(8)
        self.stored = array("q", [-1]) * slots              # which bucket each slot holds
        for s in range(slots):
            if os.preadv(fd, [raw], offset + s * self.slot_size) == 8:
                self.stored[s] = struct.unpack("<q", raw)[0]

    def add(self, mn: array, mx: array) -> None:
        self.mn = array("d", [v if v < m else m for m, v in zip(self.mn, mn)])
        self.mx = array("d", [v if v > m else m for m, v in zip(self.mx, mx)])

    def flush(self) -> None:
        """Write the open bucket to its slot (empty buckets too: they overwrite a day-old slot)."""
        if self.bucket < 0:
            return
        pairs = array("f", [0.0]) * (2 * self.n)
        pairs[0::2] = array("f", self.mn)
        pairs[1::2] = array("f", self.mx)
        slot = self.bucket % self.slots
        os.pwrite(self.fd, struct.pack("<q", self.bucket) + pairs.tobytes(), self.offset + slot * self.slot_size)
        self.stored[slot] = self.bucket

    def reset(self, bucket: int) -> None:
        self.bucket = bucket
        self.mn = array("d", [INF]) * self.n
        self.mx = array("d", [-INF]) * self.n

    def points(self, i: int, now_bucket: int, lo: float, hi: float) -> list[tuple[float, float, float]]:
        """(bucket start, min, max) of point i over the ring, oldest first; (lo, hi) of the open bucket last."""
        out = []
        raw = bytearray(8)
        if self.bucket != now_bucket:
            lo, hi = math.inf, -math.inf
        for b in range(now_bucket - self.slots + 1, now_bucket + 1):
            slot = b % self.slots
            if self.stored[slot] != b:
                continue
            os.preadv(self.fd, [raw], self.offset + slot * self.slot_size + 8 + 8 * i)
            b_lo, b_hi = struct.unpack("<2f", raw)
            if b == now_bucket:          # written before a restart within this bucket: one bucket with the open one
                lo, hi = min(lo, b_lo), max(hi, b_hi)
            elif b_lo <= b_hi:           # inf/-inf: no sample in that bucket
                out.append((b * self.width, b_lo, b_hi))
        if lo <= hi:
            out.append((now_bucket * self.width, lo, hi))
        return out


class History:
    """Min/max trend of every point; see the module docstring for what it costs."""

    def __init__(self, path: Path, codes: list[str]):
        self.path = Path(path)
        self.n = len(codes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        want = HEADER.pack(MAGIC, self.n, _fingerprint(codes))
        have = os.pread(self.fd, HEADER.size, 0)
        sizes = [8 + 8 * self.n for _ in (FINE, COARSE)]
        total = HEADER_SIZE + sizes[0] * FINE[1] + sizes[1] * COARSE[1]
        if have != want:
            if have:
                log.info("console history %s: the points changed; trend history starts afresh", self.path)
            os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, total)                    # sparse: blocks are used as buckets fill
            os.pwrite(self.fd, want, 0)
        self.fine = _Tier(self.fd, HEADER_SIZE, self.n, *FINE)
        self.coarse = _Tier(self.fd, HEADER_SIZE + self.fine.size, self.n, *COARSE)

    def sample(self, values: array, now: float, blank: list[tuple[int, int]] = ()) -> None:
        """Fold one sample of every point (array('d'), NaN = none) into the open buckets.

        `blank` lists index ranges [start, stop) whose values are stale (device offline).
        """
        fine, coarse = self.fine, self.coarse
        b = int(now // fine.width)
        if b != fine.bucket:
            if fine.bucket >= 0:
                fine.flush()
                coarse.add(fine.mn, fine.mx)
            fine.reset(b)
            cb = int(now // coarse.width)
            if cb != coarse.bucket:
                coarse.flush()
                coarse.reset(cb)
        if len(values) != self.n:
            return
        if blank:
            values = array("d", values)
            for start, stop in blank:
                values[start:stop] = array("d", [math.nan]) * (stop - start)
        # a comparison with NaN is false, so the accumulator is kept: a NaN never enters a bucket
        # (comprehensions: half the time of map(min, ...) here)
        fine.mn = array("d", [v if v < m else m for m, v in zip(fine.mn, values)])
        fine.mx = array("d", [v if v > m else m for m, v in zip(fine.mx, values)])

    def series(self, i: int, now: float) -> dict[str, list[tuple[float, float, float]]]:
        """{"hour": [(t, min, max)] at 10 s, "day": [...] at 2 min}, oldest first."""
        fine, coarse = self.fine, self.coarse
        lo, hi = fine.mn[i], fine.mx[i]
        hour = fine.points(i, int(now // fine.width), lo, hi)
        # the open coarse bucket has not been given the open fine bucket yet
        day = coarse.points(i, int(now // coarse.width), min(lo, coarse.mn[i]), max(hi, coarse.mx[i]))
        return {"hour": hour, "day": day}

    def close(self) -> None:
        if self.fd >= 0:
            self.fine.flush()
            self.coarse.add(self.fine.mn, self.fine.mx)
            self.coarse.flush()
            os.close(self.fd)
            self.fd = -1


class Changes:
    """When each point's value or status last changed, from the once-a-second samples.

    17 B per point (previous value and status, time of change).
    """

    def __init__(self, n: int):
        self.n = n
        self.at = array("d", [math.nan]) * n
        self._v = array("d", [math.nan]) * n
        self._s = array("B", [0]) * n

    def update(self, values: array, status: array, now: float) -> None:
        if len(values) != self.n or len(status) != self.n:
            return
        at = self.at
        # a != b is true for two NaNs: a NaN that stays NaN is no change
        for i in [i for i, a, b in zip(range(self.n), self._v, values) if a != b and (a == a or b == b)]:
            at[i] = now
        if status != self._s:                        # usually equal: one C comparison of the whole array
            for i in itertools.compress(range(self.n), map(operator.ne, self._s, status)):
                at[i] = now
        self._v = array("d", values)
        self._s = array("B", status)

    def last_change(self, i: int) -> float | None:
        t = self.at[i] if 0 <= i < self.n else math.nan
        return None if math.isnan(t) else t
