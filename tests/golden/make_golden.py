"""Golden fixtures of the networking profile: fixed inputs -> MQTT payloads and spec text files.

    python tests/golden/make_golden.py        # rewrite tests/golden/expected/ (review the diff!)

tests/test_profile_golden.py runs `generate()` into a temporary folder and
compares every byte with tests/golden/expected/.  Inputs are fixed here: the
site of tests/golden/site.yaml, the default profile, Asia/Shanghai time,
hand-made state arrays, statistics and events.
"""
from __future__ import annotations

import datetime as dt
import math
import shutil
import sys
from array import array
from types import SimpleNamespace
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from edge_agent.config import load_site
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from edge_agent.profile.encode import Encoder
from edge_agent.profile.textfile import write_text_file

HERE = Path(__file__).resolve().parent
TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 29, 10, 0, 20, tzinfo=TZ).timestamp()
NAN = math.nan


def Event(point, anomaly, side, begin, start, end, value, max, max_time, min, min_time, avg):
    """An event as the encoder contract describes it (the kernel's records have these attributes)."""
    return SimpleNamespace(**{k: v for k, v in locals().items()})


def Stat(point, start, end, max, max_time, min, min_time, avg, count, delta):
    """Window statistics as the encoder contract describes them."""
    return SimpleNamespace(**{k: v for k, v in locals().items()})


def inputs():
    """(site, profile, encoder, messages): messages are (seq, type, epoch time, body)."""
    site = load_site(HERE / "site.yaml")
    profile = load_profile(site.profile)
    catalog = Catalog(site, profile)
    enc = Encoder(site, catalog, profile, tz=TZ)
    # state arrays as the kernel keeps them, by global index:
    # 0 CH4 (alarm), 1 CO, 2 O2, 3 temperature (sensor fault), 4 cut-off relay,
    # 5 belt running (device down: status 16, last value), 6 motor current (alarm), 7 output (never polled)
    values = array("d", [1.0200000001, 12.6, 20.04999, NAN, 1.0, 1.0, 182.349, NAN])
    statuses = array("B", [1, 0, 0, 128, 0, 16, 1, 0])   # 7: the kernel starts at 0; never sampled -> 32
    times = array("d", [NOW - 1.2, NOW - 0.5, NOW - 0.5, NOW - 0.5, NOW - 0.5, NOW - 61.9, NOW - 3.0, NAN])
    w0 = NOW - 320.0   # the 5-minute window 09:55:00-10:00:00
    stats = [
        Stat(0, w0, w0 + 300, 1.62, NOW - 140.0, 0.38, w0 + 1.0, 0.7349999, 300, None),
        Stat(1, w0, w0 + 300, 13.0, w0 + 42.0, 11.0, w0 + 200.0, 12.25, 300, None),
        Stat(6, w0, w0 + 300, 182.349, NOW - 25.0, -0.0001, w0 + 3.0, 101.66666, 150, None),
        Stat(7, w0, w0 + 300, 12345.6, w0 + 299.0, 12000.0, w0, 12170.0, 300, 345.6),
    ]
    t_alarm, t_cut, t_restore, t_clear = NOW - 295.0, NOW - 200.0, NOW - 150.0, NOW - 20.0
    ch4_begin = Event(0, "001", "high", True, t_alarm, None, 1.02, 1.02, t_alarm, 1.02, t_alarm, 1.02)
    cut_begin = Event(0, "002", "high", True, t_cut, None, 1.51, 1.51, t_cut, 1.51, t_cut, 1.51)
    cut_end = Event(0, "002", "high", False, t_cut, t_restore, 0.98, 1.62, NOW - 140.0 - 20, 1.51, t_cut,
                    1.5666666)
    ch4_end = Event(0, "001", "high", False, t_alarm, t_clear, 0.88, 1.62, NOW - 160.0, 0.9, t_clear - 1,
                    1.2345678)
    fault = Event(3, "004", "", True, NOW - 0.5, None, NAN, NAN, NAN, NAN, NAN, NAN)
    down = Event(5, "006", "", True, NOW - 61.9, None, 1.0, NAN, NAN, NAN, NAN, NAN)
    messages = [
        (1, "CDDY", NOW, enc.cddy(NOW)),
        (2, "FZDY", NOW, enc.fzdy(NOW)),
        (3, "YCBJ", t_alarm, enc.ycbj([ch4_begin], t_alarm)),
        (4, "YCBJ", t_cut, enc.ycbj([cut_begin], t_cut)),
        (5, "YCBJ", t_restore, enc.ycbj([cut_end], t_restore)),
        (6, "YCBJ", t_clear, enc.ycbj([ch4_end], t_clear)),
        (7, "CDSS", NOW - 1.2, enc.cdss([0, 6], values, statuses, times, NOW - 1.2)),
        (8, "CDSS", NOW, enc.cdss(range(len(catalog)), values, statuses, times, NOW)),
        (9, "FZSS", NOW, enc.fzss([(0, 1), (1, 9)], NOW)),
        (10, "TJSJ", NOW, enc.tjsj(stats, NOW)),
        # same type, same second as seq 8: the later file takes the next second
        (11, "YCBJ", NOW, enc.ycbj([fault, down], NOW)),
        (12, "CDSS", NOW + 0.4, enc.cdss([1], values, statuses, times, NOW + 0.4)),
    ]
    return site, profile, enc, messages


CH4 = [0.85, 1.05, 1.3, 1.62, 1.4, 0.95, 0.85, 0.5]    # frames 5..12: warning, alarm, cut-off, back


def kernel_messages(site, profile, enc):
    """A fixed set of frames through the filtering kernel, encoded as the pipeline encodes them.

    Two devices polled every 10 s through the window 09:55:00-10:00:00: a CH4
    excursion (009, 001, 002 begin and end), a temperature sensor fault (004),
    the belt substation unreachable for three polls (006), then the window's
    statistics and a full CDSS snapshot at 10:00:20.
    """
    from edge_agent.filtering import Kernel
    from edge_agent.frame import Frame
    catalog = enc.catalog
    k = Kernel(len(catalog), catalog.thresholds(), realtime_every=site.report.realtime_every,
               stats_window=site.report.stats_window)
    w0 = NOW - 320.0
    messages = []

    def add(typ: str, t: float, body: bytes) -> None:
        messages.append((100 + len(messages), typ, t, body))

    for j in range(29):
        t = w0 + 1 + 10 * j
        ch4 = CH4[j - 5] if 5 <= j < 5 + len(CH4) else 0.5
        temp, q_temp = (NAN, 128) if 20 <= j <= 22 else (23.4 + 0.1 * (j % 3), 0)
        down = 24 <= j <= 26
        frames = [
            Frame(0, t, t, array("i", range(5)), array("d", [ch4, 12.0 + j % 3, 20.5 - 0.1 * (j % 2), temp,
                                                             1.0 if 7 <= j <= 9 else 0.0]),
                  array("B", [0, 0, 0, q_temp, 0])),
            Frame(1, t + 0.25, t + 0.25, array("i", range(5, 8)),
                  array("d", [NAN] * 3 if down else [1.0, 150.0 + j, 12000.0 + 10 * j]),
                  array("B", [16] * 3 if down else [0, 0, 0])),
        ]
        for f in frames:
            report = k.process(f)
            if len(report):
                add("CDSS", f.wall, enc.cdss(report, k.value, k.status, k.time, f.wall))
            events = k.take_events()
            if events:
                add("YCBJ", f.wall, enc.ycbj(events, f.wall))
    add("TJSJ", NOW, enc.tjsj(k.take_stats(NOW), NOW))
    add("CDSS", NOW, enc.cdss(range(len(catalog)), k.value, k.status, k.time, NOW))
    return messages


def _write(out: Path, site, profile, enc, messages) -> list[Path]:
    (out / "mqtt").mkdir(parents=True, exist_ok=True)
    (out / "files").mkdir(parents=True, exist_ok=True)
    written = []
    topics = []
    for seq, typ, t, body in messages:
        p = out / "mqtt" / f"{seq:03d}-{typ}.json"
        p.write_bytes(enc.envelope(seq, typ, t, body))
        written.append(p)
        topics.append(f"{seq} {enc.topic(typ)} retained={enc.retained(typ)}\n")
        written.append(write_text_file(profile, site, typ, t, orjson.loads(body), out / "files", tz=TZ,
                                       clock=lambda: NOW + 3600))
    (out / "mqtt" / "topics.txt").write_text("".join(topics), encoding="utf-8")
    written.append(out / "mqtt" / "topics.txt")
    return written


def generate(out: Path) -> list[Path]:
    """Under `out`: the hand-made set (mqtt/, files/) and the kernel set (kernel/mqtt/, kernel/files/);
    mqtt/<seq>-<TYPE>.json are payloads, mqtt/topics.txt their topics, files/ the spec files."""
    site, profile, enc, messages = inputs()
    written = _write(out, site, profile, enc, messages)
    return written + _write(out / "kernel", site, profile, enc, kernel_messages(site, profile, enc))


def main() -> None:
    target = HERE / "expected"
    if target.exists():
        shutil.rmtree(target)
    for p in generate(target):
        print(p.relative_to(HERE))


if __name__ == "__main__":
    sys.exit(main())
