"""Baselines kept at the edge: hourly sums in a real SQLite file, through a real kernel, across restarts.

Eight days of a water-inflow point (a sample every 10 minutes of wall time,
the value a function of the hour of day) go through the kernel; the store
writes the hourly sums, computes both baseline forms (the same hour on the
last 7 days; the 7 days before the last 24 hours) and they must equal the
means computed here independently.  Then the store is closed and a new
kernel + store open the same file: baselines, levels and windows continue.
"""
from __future__ import annotations

import math
import os
import sqlite3
import textwrap

import pytest

from edge_agent.baseline import BaselineStore, store_path
from edge_agent.config import load_site
from edge_agent.filtering import Kernel
from edge_agent.frame import Frame
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from array import array

DAY, HOUR = 86400, 3600
START = 1_796_083_200.0 - 8 * DAY          # a midnight (UTC), eight days before "now"

SITE = textwrap.dedent("""\
    site: {mine_code: "140211001234"}
    buffer: {path: buffer.sqlite}
    devices:
      - name: pumps
        driver: modbus-tcp
        host: 127.0.0.1
        poll: 10m
        points:
          - id: Q1
            sensor: "0053"
            address: hr:0
            rules:
              - {kind: baseline, window: 1h, against: 7d, increase: ["30%", "50%", "80%", "100%"]}
              - {kind: baseline, window: 24h, against: 7d, factor: [1.3, 1.5, 1.8, 2.0]}
          - id: Q2
            sensor: "0053"
            address: hr:2
    """)


def inflow(t: float) -> float:
    """m3/min: a smooth daily cycle around 30."""
    return 30.0 + 6.0 * math.sin(2 * math.pi * (t % DAY) / DAY)


def hourly_mean(hour: int) -> float:
    """The mean of the samples (every 10 minutes) of one clock hour, computed here, not by the store."""
    return sum(inflow(hour * HOUR + 600.0 * k) for k in range(6)) / 6


class Agentlet:
    """A catalog, a kernel and the store, fed the way the agent feeds them (frame, then clock)."""

    def __init__(self, tmp_path, now: float):
        (tmp_path / "site.yaml").write_text(SITE, encoding="utf-8")
        self.site = load_site(tmp_path / "site.yaml")
        self.catalog = Catalog(self.site, load_profile("default"))
        self.kernel = Kernel(len(self.catalog), self.catalog.thresholds(), realtime_every=20.0, stats_window=300.0)
        self.store = BaselineStore.open(store_path(tmp_path / "buffer.sqlite"), self.catalog, self.kernel, now)

    def sample(self, t: float, q1: float) -> list:
        self.kernel.process(Frame(0, t, t, array("i", [0, 1]), array("d", [q1, 5.0]), array("B", [0, 0])))
        self.store.tick(t)
        return self.kernel.take_level_changes()


def feed_week(a: Agentlet, until: float) -> None:
    t = START
    while t < until:
        a.sample(t, inflow(t))
        t += 600.0


def test_a_week_of_hourly_sums_gives_both_baselines(tmp_path):
    now = START + 8 * DAY + 5 * HOUR
    a = Agentlet(tmp_path, START)
    feed_week(a, now)
    a.store.tick(now)                       # a new hour: sums written, baselines computed
    h = int(now // HOUR)
    same_hour, daily = a.kernel.ladder.baseline[0], a.kernel.ladder.baseline[1]
    # this hour and the one before, on each of the last 7 days (every day the same here)
    assert same_hour == pytest.approx((hourly_mean(h - 1) + hourly_mean(h)) / 2)
    # the 7 days before the last 24 h: whole days of a sine, so its middle
    assert daily == pytest.approx(30.0)
    # the file holds hours, not samples: ~192 rows for 8 days, only for the point with baseline rules
    db = sqlite3.connect(a.store.path)
    assert db.execute("SELECT count(*) FROM hours").fetchone()[0] == 8 * 24 + 5
    assert db.execute("SELECT count(DISTINCT point) FROM hours").fetchone()[0] == 1
    assert db.execute("SELECT sum(count) FROM hours").fetchone()[0] == (8 * 24 + 5) * 6
    db.close()
    a.store.close(now)
    assert a.store.path.stat().st_size < 64 * 1024


def test_the_baseline_fires_and_survives_a_restart(tmp_path):
    now = START + 8 * DAY + 6 * HOUR        # the top of the daily cycle: flat for an hour
    a = Agentlet(tmp_path, START)
    feed_week(a, now)
    # the inflow jumps to 1.6x the usual: as the hour's window fills, the hourly rule climbs to yellow
    changes = []
    for k in range(7):
        changes += a.sample(now + 600.0 * k, 1.6 * inflow(now))
    assert [(c.rule, c.level) for c in changes] == [("baseline", 1), ("baseline", 2)]
    assert 50.0 <= changes[-1].value and a.kernel.level[0] == 2
    level, baselines = a.kernel.level[0], list(a.kernel.ladder.baseline)
    a.store.close(now + 4000.0)

    # restart: a new kernel and store on the same file
    b = Agentlet(tmp_path, now + 4100.0)
    assert list(b.kernel.ladder.baseline) == pytest.approx(baselines)
    assert b.kernel.level[0] == level == 2
    assert b.sample(now + 4200.0, 1.6 * inflow(now)) == []        # still yellow: no second "begin"
    ended = []
    for k in range(1, 9):                                          # back to normal: the window empties
        ended += b.sample(now + 4200.0 + 600.0 * k, inflow(now))
    assert ended and ended[-1].level == 0 and ended[-1].rule == "baseline"   # the "end" still comes
    assert [c.previous for c in ended][0] == 2


def test_a_restart_keeps_the_sums_of_the_running_hour(tmp_path):
    a = Agentlet(tmp_path, START)
    for k in range(3):
        a.sample(START + 600.0 * k, 30.0)
    a.store.close(START + 1800.0)                                  # mid-hour
    b = Agentlet(tmp_path, START + 1900.0)
    for k in range(3, 6):
        b.sample(START + 600.0 * k, 60.0)
    b.store.close(START + HOUR + 1)
    db = sqlite3.connect(b.store.path)
    assert db.execute("SELECT hour, sum, count FROM hours").fetchall() == [(int(START // HOUR), 270.0, 6)]


def test_old_hours_are_dropped(tmp_path):
    a = Agentlet(tmp_path, START)
    feed_week(a, START + 8 * DAY)
    a.store.tick(START + 20 * DAY)             # nothing for 12 days: the first hours are no longer needed
    db = sqlite3.connect(a.store.path)
    oldest = db.execute("SELECT min(hour) FROM hours").fetchone()[0]
    assert oldest is None or oldest >= int((START + 20 * DAY) // HOUR) - 8 * 24 - 24
    assert math.isnan(a.kernel.ladder.baseline[0])   # and the baselines have no data: no level


def test_a_full_disk_keeps_the_sums_in_memory_logs_once_and_writes_them_later(tmp_path, caplog):
    from test_buffer_bounds import tmpfs
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        site_dir = mnt / "site"
        site_dir.mkdir()
        a = Agentlet(site_dir, START)
        ballast = mnt / "ballast"
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)   # fill the disk to the last byte
        try:
            while os.write(fd, b"\xff" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        for k in range(24 * 6):                         # a day of samples, a flush every 5 minutes
            a.sample(START + 600.0 * k, 30.0)
        failed = [r for r in caplog.records if "writing failed" in r.getMessage()]
        assert len(failed) == 1 and a.store.pending, "refused, logged once, kept in memory"
        ballast.unlink()
        a.sample(START + DAY + 400.0, 30.0)             # the next flush writes everything it held
        assert not a.store.pending and a.store.dropped == 0
        assert [r for r in caplog.records if "written again" in r.getMessage()]
        a.store.close(START + DAY + HOUR)
        db = sqlite3.connect(a.store.path)
        assert db.execute("SELECT sum(count) FROM hours").fetchone()[0] == 24 * 6 + 1
        db.close()
