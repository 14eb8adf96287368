"""Buffer bounds and disk trouble on real files: priorities, exact drop counters, a full tmpfs."""
from __future__ import annotations

import logging
import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import contextmanager

import pytest

from edge_agent.buffer import Buffer
from edge_agent.errors import EdgeAgentError
from test_buffer import assert_counts_exact

# Buffer()'s default sinks get the first bits, in order
SINKS = {"mqtt": 1, "files": 2}
ALL_SINKS = 3

BODY = 4000


def msg(ty: str, t: float | None = None, size: int = BODY) -> tuple:
    return (ty, ALL_SINKS, time.time() if t is None else t, ty.encode() * (size // len(ty)))


def surviving(buf: Buffer) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for seq, ty in buf.db.execute("SELECT seq, type FROM messages ORDER BY seq"):
        out.setdefault(ty, []).append(seq)
    return out


def check_counters(buf: Buffer, appended: dict[str, list[int]]) -> dict[str, int]:
    """Drop counters equal the rows that are gone, and the gone rows are the oldest of their type."""
    left = surviving(buf)
    gone = {}
    for ty, seqs in appended.items():
        kept = left.get(ty, [])
        assert kept == seqs[len(seqs) - len(kept):], f"{ty}: survivors are not the newest rows"
        if len(seqs) - len(kept):
            gone[ty] = len(seqs) - len(kept)
    assert buf.drops == gone
    assert_counts_exact(buf.db)
    return gone


def append(buf: Buffer, appended: dict, messages: list[tuple]) -> None:
    for (ty, *_), seq in zip(messages, buf.append(messages)):
        appended.setdefault(ty, []).append(seq)


def test_max_size_drops_oldest_cdss_then_tjsj_never_ycbj(tmp_path, caplog):
    buf = Buffer(tmp_path / "b.sqlite", max_size=600_000)
    appended: dict[str, list[int]] = {}
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        append(buf, appended, [msg("TJSJ") for _ in range(30)] + [msg("YCBJ") for _ in range(30)])
        assert buf.drops == {}
        for _ in range(100):                           # realtime keeps coming: only old CDSS go
            append(buf, appended, [msg("CDSS"), msg("CDSS")])
            assert buf._used_bytes() <= buf.max_size
        gone = check_counters(buf, appended)
        assert set(gone) == {"CDSS"} and gone["CDSS"] > 100
        for _ in range(30):                            # now statistics outgrow the bound
            append(buf, appended, [msg("TJSJ", size=3 * BODY)])
        gone = check_counters(buf, appended)
    assert "CDSS" not in surviving(buf)                # every realtime row went before any statistics
    assert gone["TJSJ"] > 0 and len(surviving(buf)["YCBJ"]) == 30
    assert buf._used_bytes() <= buf.max_size
    starts = [r for r in caplog.records if "dropping oldest" in r.getMessage()]
    assert len(starts) == 1 and "max_size" in starts[0].getMessage()   # one line for the episode
    buf.close()


def test_definitions_then_alarms_go_only_when_nothing_else_is_left(tmp_path):
    buf = Buffer(tmp_path / "b.sqlite", max_size=300_000)
    appended: dict[str, list[int]] = {}
    for _ in range(40):
        append(buf, appended, [msg("CDDY"), msg("YCBJ")])
    gone = check_counters(buf, appended)
    assert set(gone) == {"CDDY"}                         # definitions are re-sent; alarms are not
    for _ in range(60):
        append(buf, appended, [msg("YCBJ")])
    gone = check_counters(buf, appended)
    assert gone["CDDY"] == 40 and gone["YCBJ"] > 0
    buf.close()


def test_max_age_drops_old_realtime_and_statistics_but_keeps_alarms(tmp_path, caplog):
    buf = Buffer(tmp_path / "b.sqlite", max_age=3600)
    now = time.time()
    old = [msg(ty, t=now - 7200) for ty in ("CDSS", "TJSJ", "YCBJ", "CDDY", "FZSS", "CDSS")]
    fresh = [msg(ty, t=now - 60) for ty in ("CDSS", "TJSJ", "YCBJ")]
    seqs = buf.append(old + fresh)
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        buf.tick(now)
        buf.tick(now + 1)
    left = [s for s, in buf.db.execute("SELECT seq FROM messages ORDER BY seq")]
    assert left == [seqs[2], seqs[3]] + seqs[6:]
    assert buf.drops == {"CDSS": 2, "TJSJ": 1, "FZSS": 1}
    assert sum("max_age" in r.getMessage() for r in caplog.records) == 1
    buf.close()


def test_drop_report_is_taken_once_and_survives_restart(tmp_path, caplog):
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, max_size=200_000)
    for _ in range(80):
        buf.append([msg("CDSS")])
    dropped = buf.drops["CDSS"]
    assert dropped > 0
    buf.close()
    buf = Buffer(path, max_size=200_000)               # uplink still down across a restart
    assert buf.drops == {"CDSS": dropped}
    report = buf.take_drop_report()
    assert report["drops"] == {"CDSS": dropped} and report["totals"] == {"CDSS": dropped}
    assert buf.take_drop_report() is None
    buf.close()
    buf = Buffer(path, max_size=200_000)
    assert buf.take_drop_report() is None and buf.drops == {"CDSS": dropped}
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        buf.append([msg("CDSS") for _ in range(10)])
        buf.tick(time.time() + 61)                      # a quiet minute ends the episode: one summary line
        buf.tick(time.time() + 122)
    assert sum("drops stopped" in r.getMessage() for r in caplog.records) == 1
    buf.close()


# ---------------------------------------------------------------------------- a full disk

@contextmanager
def tmpfs(mnt, size: str):
    """A tmpfs of `size` at `mnt`: a real filesystem that really fills up (skips if mounting is impossible)."""
    mnt.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def tiny_fs(tmp_path):
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        yield mnt


def fill_until_refused(buf: Buffer, ty: str = "CDSS", extra: int = 10, size: int = 20_000) -> list[int]:
    seqs = []
    for _ in range(1000):
        seqs += buf.append([msg(ty, size=size)])
        if buf.held:
            break
    assert buf.held, "the tiny filesystem never filled up"
    for _ in range(extra):
        seqs += buf.append([msg(ty, size=size), msg("YCBJ", size=size // 4)])
    return seqs


def test_disk_full_holds_in_memory_and_commits_after_space_returns(tiny_fs, caplog):
    ballast = tiny_fs / "ballast"
    ballast.write_bytes(b"\xff" * 900_000)
    buf = Buffer(tiny_fs / "b.sqlite", retry_every=0)
    with caplog.at_level(logging.INFO, logger="edge_agent.buffer"):
        seqs = fill_until_refused(buf)
        buf.tick()                                      # still full: retried, quietly
    assert seqs == list(range(1, len(seqs) + 1))        # append never raised, seq never skipped
    refused = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(refused) == 1 and "full" in refused[0].getMessage()
    committed = [s for s, in buf.db.execute("SELECT seq FROM messages ORDER BY seq")]
    assert committed == list(range(1, len(committed) + 1)) and len(committed) < len(seqs)
    assert [r.seq for r in buf.peek("mqtt", 10_000)] == committed     # held rows are not handed out
    assert buf.stats()["held"]["rows"] == len(seqs) - len(committed)
    assert buf.backlog("mqtt") == len(seqs)

    buf.ack("mqtt", committed[:3])                      # a sink delivers while the disk is full
    assert [r.seq for r in buf.peek("mqtt", 10_000)] == committed[3:]
    assert buf.backlog("files") == len(seqs)

    ballast.unlink()                                    # space returns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_agent.buffer"):
        buf.tick()
    assert buf.held == 0 and buf.stats()["disk_error"] is None
    assert sum("again" in r.getMessage() for r in caplog.records) == 1
    assert [r.seq for r in buf.peek("mqtt", 10_000)] == seqs[3:]
    assert buf.append([msg("CDSS")]) == [len(seqs) + 1]
    buf.close()
    db = sqlite3.connect(tiny_fs / "b.sqlite")
    assert [s for s, in db.execute("SELECT seq FROM messages ORDER BY seq")] == seqs + [len(seqs) + 1]
    assert db.execute("SELECT sinks FROM messages WHERE seq = 1").fetchone()[0] == SINKS["files"]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_memory_hold_full_drops_realtime_first_and_counts(tiny_fs, caplog):
    ballast = tiny_fs / "ballast"
    ballast.write_bytes(b"\xff" * 900_000)
    buf = Buffer(tiny_fs / "b.sqlite", retry_every=0, memory_limit=300_000)
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        seqs = fill_until_refused(buf, extra=20)        # ~800 kB of new rows against a 300 kB hold
    held_types = Counter(ty for _, ty, *_ in buf._held)
    assert held_types["YCBJ"] == 20                     # every alarm kept, realtime shed
    assert buf.drops["CDSS"] > 0 and set(buf.drops) == {"CDSS"}
    assert sum("dropping oldest" in r.getMessage() for r in caplog.records) == 1
    ballast.unlink()
    buf.tick()
    assert buf.held == 0
    left = [s for s, in buf.db.execute("SELECT seq FROM messages ORDER BY seq")]
    assert len(seqs) - len(left) == buf.drops["CDSS"]   # the counter matches exactly what is missing
    dropped = buf.drops
    buf.close()
    assert Buffer(tiny_fs / "b.sqlite").drops == dropped  # memory drops were persisted once writable


def test_read_only_filesystem_at_start_is_one_clear_error(tiny_fs):
    buf = Buffer(tiny_fs / "b.sqlite")
    buf.append([msg("CDSS")])
    buf.close()
    r = subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with pytest.raises(EdgeAgentError) as info:
        Buffer(tiny_fs / "b.sqlite")
    text = str(info.value)
    assert str(tiny_fs / "b.sqlite") in text and "writable" in text and "\n" not in text


def test_held_rows_go_back_in_order_as_space_returns_bit_by_bit(tiny_fs):
    ballast = [tiny_fs / "ballast1", tiny_fs / "ballast2"]
    for b in ballast:
        b.write_bytes(b"\xff" * 450_000)
    buf = Buffer(tiny_fs / "b.sqlite", retry_every=0, sync_every=0)
    seqs = fill_until_refused(buf, extra=15)            # ~400 kB held: written to the WAL, then the file
    held = buf.held

    def committed() -> list[int]:
        return [s for s, in buf.db.execute("SELECT seq FROM messages ORDER BY seq")]

    ballast[0].unlink()
    buf.tick()
    assert 0 < buf.held < held                          # what fits is committed, the rest still waits
    assert committed() == seqs[:len(committed())]       # in order, no gap
    ballast[1].unlink()
    buf.tick()
    buf.tick()
    assert buf.held == 0 and committed() == seqs
    buf.close()
