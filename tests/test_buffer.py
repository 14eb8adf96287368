"""The store-and-forward buffer on real SQLite files: seq, sinks, durability, corruption, migration."""
from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Row, counts

# Buffer()'s default sinks get the first bits, in order
SINKS = {"mqtt": 1, "files": 2}
ALL_SINKS = 3
MQTT, FILES = SINKS["mqtt"], SINKS["files"]


def batch(types: str, mask: int = ALL_SINKS, size: int = 100, t: float | None = None) -> list[tuple]:
    t = time.time() if t is None else t
    return [(ty, mask, t, ty.encode() * (size // 4)) for ty in types.split()]


def assert_counts_exact(db) -> None:
    """The running counts equal a full scan of the rows."""
    by_type = {t: (n, b) for t, n, b in db.execute(
        "SELECT type, count(*), sum(length(body)) FROM messages GROUP BY type ORDER BY type")}
    owed = {s: db.execute("SELECT count(*) FROM messages WHERE sinks & ?", (bit,)).fetchone()[0]
            for s, bit in dict(db.execute("SELECT name, bit FROM sinks ORDER BY bit")).items()}
    assert counts.read(db) == (by_type, owed)


def seqs_in(path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT seq FROM messages ORDER BY seq")]
    finally:
        db.close()


def test_append_peek_ack_and_seq_continues_after_restart(tmp_path):
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    assert buf.append(batch("CDSS YCBJ TJSJ")) == [1, 2, 3]
    assert buf.append([]) == []
    rows = buf.peek("mqtt", 10)
    assert [r.seq for r in rows] == [1, 2, 3] and isinstance(rows[0], Row)
    assert [r.type for r in rows] == ["CDSS", "YCBJ", "TJSJ"]
    assert rows[1].body == b"YCBJ" * 25
    assert [r.seq for r in buf.peek("mqtt", 2)] == [1, 2]
    assert [r.seq for r in buf.peek("mqtt", 10, after_seq=2)] == [3]
    buf.ack("mqtt", [1, 2, 3])
    buf.ack("files", [1, 2, 3])
    assert buf.peek("mqtt", 10) == [] and seqs_in(path) == []
    buf.close()

    buf = Buffer(path)     # every row acked and deleted: seq still continues
    assert buf.next_seq == 4
    assert buf.append(batch("CDSS")) == [4]
    buf.close()
    with Buffer(path) as buf:
        assert buf.append(batch("CDSS CDSS")) == [5, 6]
        assert [r.seq for r in buf.peek("files", 10)] == [4, 5, 6]
    buf.close()                                          # closing twice is harmless


def test_sinks_drain_independently(tmp_path):
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    buf.append(batch("CDSS " * 50, mask=ALL_SINKS))
    buf.append(batch("YCBJ", mask=MQTT))          # only MQTT owes this one
    buf.append(batch("TJSJ", mask=FILES))         # only the file sink owes this one
    assert buf.backlog("mqtt") == 51 and buf.backlog("files") == 51
    # MQTT drains everything while the file sink has acknowledged nothing
    after = 0
    while rows := buf.peek("mqtt", 8, after):
        after = rows[-1].seq
        buf.ack("mqtt", [r.seq for r in rows])
    assert buf.backlog("mqtt") == 0
    assert buf.backlog("files") == 51
    assert [r.seq for r in buf.peek("files", 100)] == list(range(1, 51)) + [52]
    # rows the file sink still owes survive; the MQTT-only row is gone
    assert seqs_in(path) == list(range(1, 51)) + [52]
    buf.ack("files", range(1, 26))
    assert seqs_in(path) == list(range(26, 51)) + [52]
    assert buf.peek("files", 1)[0].seq == 26
    buf.ack("files", [26, 26, 999])                # repeats and unknown seqs are harmless
    buf.ack("mqtt", [27, 28])                      # and so are acks of a sink that already acked
    assert buf.backlog("files") == 25
    assert_counts_exact(buf.db)
    assert buf.stats()["by_type"]["CDSS"]["rows"] == 24
    buf.close()


def test_a_body_above_big_goes_in_and_out_in_chunks_and_each_sink_acks_it(tmp_path):
    """A body above schema.BIG (the start-up CDDY of a large site) is written and read through blob
    handles, not bound or selected whole: the same bytes, seq order, counts and acks as any row."""
    from edge_agent.buffer.schema import BIG, CHUNK
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    big = bytes(range(256)) * ((BIG + 3 * CHUNK) // 256 + 7)      # several chunks and a part of one
    buf.append(batch("CDSS") + [("CDDY", ALL_SINKS, 1.0, big)] + batch("FZDY", mask=MQTT))
    buf.append([("CDDY", MQTT, 2.0, big[:BIG + 1])] + batch("CDSS", mask=MQTT))
    rows = buf.peek("mqtt", 10)
    assert [(r.seq, r.type) for r in rows] == [(1, "CDSS"), (2, "CDDY"), (3, "FZDY"), (4, "CDDY"), (5, "CDSS")]
    assert rows[1].body == big and type(rows[1].body) is bytes and rows[3].body == big[:BIG + 1]
    assert rows[0].body == b"CDSS" * 25 and [r.seq for r in buf.peek("mqtt", 1, after_seq=1)] == [2]
    assert_counts_exact(buf.db)
    buf.ack("mqtt", [1, 2, 3, 4, 5])
    assert seqs_in(path) == [1, 2] and buf.backlog("mqtt") == 0       # the file sink still owes 1 and 2
    assert [r.body for r in buf.peek("files", 10)] == [b"CDSS" * 25, big]
    assert_counts_exact(buf.db)
    buf.ack("files", [2])
    assert seqs_in(path) == [1] and buf.backlog("files") == 1
    assert_counts_exact(buf.db)
    buf.close()
    again = Buffer(path)
    assert [(r.seq, r.body) for r in again.peek("files", 10)] == [(1, b"CDSS" * 25)]
    again.close()


@pytest.mark.parametrize("durability,sync", [("normal", 1), ("full", 2)])
def test_durability_modes_set_wal_and_synchronous(tmp_path, durability, sync):
    buf = Buffer(tmp_path / "b.sqlite", durability=durability)
    assert buf.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert buf.db.execute("PRAGMA synchronous").fetchone()[0] == sync
    buf.append(batch("CDSS"))
    buf.ack("mqtt", [1])                          # acks run without an fsync, then FULL again
    assert buf.db.execute("PRAGMA synchronous").fetchone()[0] == sync
    buf.close()
    with pytest.raises(ValueError):
        Buffer(tmp_path / "c.sqlite", durability="fast")


def test_normal_mode_peek_syncs_the_wal_before_handing_out_rows(tmp_path):
    """A sink never sees a seq that a power cut could roll back and hand out again."""
    buf = Buffer(tmp_path / "b.sqlite", sync_every=3600)
    buf.append(batch("CDSS CDSS"))
    assert buf._synced_top == 0                   # committed, not yet on disk for sure
    assert [r.seq for r in buf.peek("mqtt", 10)] == [1, 2]
    assert buf._synced_top == 2
    buf.append(batch("CDSS"))
    buf.sync_every = 0
    buf.tick()                                    # the periodic checkpoint bounds the window for the rest
    assert buf._synced_top == 3
    buf.close()
    full = Buffer(tmp_path / "f.sqlite", durability="full")
    full.append(batch("CDSS"))
    assert full._synced_top == 1                  # every commit is synced in full mode
    full.close()


CRASHER = textwrap.dedent("""
    import sys, time
    from edge_agent.buffer import Buffer
    buf = Buffer(sys.argv[1], durability=sys.argv[2])
    body = b"x" * 2000
    while True:
        seqs = buf.append([("CDSS", 3, time.time(), body)] * 5 + [("YCBJ", 1, time.time(), body)])
        print(seqs[-1], flush=True)       # printed only after the commit returned
        buf.tick()
""")


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_kill_9_loses_nothing_committed(tmp_path, durability):
    path = tmp_path / "b.sqlite"
    last = 0
    for cycle in range(3):
        proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(path), durability], stdout=subprocess.PIPE,
                                text=True)
        target = last + 300
        for line in proc.stdout:
            last = int(line)
            if last >= target:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout:          # lines printed before the kill landed are committed too
            last = int(line)
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        got = seqs_in(path)
        assert got[: last] == list(range(1, last + 1)), f"cycle {cycle}: committed rows missing"
    buf = Buffer(path)
    assert buf.next_seq >= last + 1
    assert buf.append(batch("CDSS"))[0] == buf.next_seq - 1
    buf.close()


def test_corrupt_file_is_moved_aside_with_one_line(tmp_path, caplog):
    path = tmp_path / "b.sqlite"
    garbage = b"this is not sqlite\x00" * 500
    path.write_bytes(garbage)
    with caplog.at_level(logging.INFO, logger="edge_agent.buffer"):
        buf = Buffer(path)
    moved = list(tmp_path.glob("b.sqlite.corrupt-*"))
    assert len(moved) == 1
    aside = moved[0]
    assert aside.read_bytes() == garbage
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "corrupt" in lines[0].getMessage() and aside.name in lines[0].getMessage()
    assert buf.append(batch("CDSS")) == [1]
    buf.close()
    assert Buffer(path).next_seq == 2             # the new file is healthy: no second move


def damage_root_page(path, name: str, length: int | None = None) -> None:
    """Overwrite the first `length` bytes (default: all) of table/index `name`'s root page with junk."""
    db = sqlite3.connect(path)
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (name,)).fetchone()[0]
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page
    n = page if length is None else length
    data[start:start + n] = b"\xa5" * n
    path.write_bytes(bytes(data))


def test_damaged_table_is_detected_at_open(tmp_path, caplog):
    """The messages table's root page is destroyed: nothing to salvage; seq still continues."""
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    for _ in range(20):
        buf.append(batch("CDSS " * 20, size=3000))
    buf.close()
    damage_root_page(path, "messages")
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        buf = Buffer(path)
    assert len(list(tmp_path.glob("b.sqlite.corrupt-*"))) == 1
    [line] = [r.getMessage() for r in caplog.records]
    assert "is corrupt" in line and "0 messages still readable" in line and "\n" not in line
    assert "seq continues at 401" in line                  # the meta table survived: no seq reset
    assert buf.append(batch("YCBJ")) == [401]
    buf.close()


def test_readable_messages_of_a_damaged_file_are_salvaged(tmp_path, caplog):
    """An index page is damaged: quick_check fails, but every message is still readable and kept."""
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    seqs = buf.append(batch("CDSS YCBJ TJSJ " * 10))
    buf.ack("mqtt", seqs[:5])
    buf.ack("files", seqs[:3])
    buf.close()
    damage_root_page(path, "messages_prio", 64)
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        buf = Buffer(path)
    [line] = [r.getMessage() for r in caplog.records]
    assert "is corrupt" in line and "27 messages still readable" in line and "seq continues at 31" in line
    assert [r.seq for r in buf.peek("mqtt", 100)] == seqs[5:]       # what each sink still owed
    assert [r.seq for r in buf.peek("files", 100)] == seqs[3:]
    assert buf.append(batch("CDSS")) == [31]
    assert buf.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert_counts_exact(buf.db)
    buf.close()


V0_SCHEMA = """
CREATE TABLE messages (seq INTEGER PRIMARY KEY, type TEXT NOT NULL, sinks INTEGER NOT NULL,
                       time REAL NOT NULL, body BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def test_schema_0_file_is_migrated(tmp_path):
    path = tmp_path / "b.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V0_SCHEMA)
    now = time.time()
    db.executemany("INSERT INTO messages VALUES (?,?,?,?,?)",
                   [(5, "CDSS", 3, now, b"a"), (6, "YCBJ", 1, now, b"b"), (7, "TJSJ", 2, now, b"c")])
    db.execute("INSERT INTO meta VALUES ('next_seq', 9)")
    db.commit()
    db.close()
    buf = Buffer(path)
    assert buf.next_seq == 9
    assert [(r.seq, r.type) for r in buf.peek("mqtt", 10)] == [(5, "CDSS"), (6, "YCBJ")]
    assert [r.seq for r in buf.peek("files", 10)] == [5, 7]
    prio = dict(buf.db.execute("SELECT type, prio FROM messages"))
    assert prio == {"CDSS": 0, "YCBJ": 3, "TJSJ": 1}
    assert buf.append(batch("CDSS")) == [9]
    buf.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert_counts_exact(db)
    assert counts.read(db) == ({"CDSS": (2, 101), "TJSJ": (1, 1), "YCBJ": (1, 1)}, {"mqtt": 3, "files": 3})
    db.close()


def test_a_schema_2_file_of_the_previous_version_opens_without_losing_a_row(tmp_path):
    """tests/fixtures/buffer-schema2.sqlite was written by the version before the sinks table."""
    import shutil
    fixture = Path(__file__).parent / "fixtures" / "buffer-schema2.sqlite"
    path = tmp_path / "buffer.sqlite"
    shutil.copy(fixture, path)
    raw = sqlite3.connect(path)
    rows = raw.execute("SELECT seq, type, sinks, time, body FROM messages ORDER BY seq").fetchall()
    next_seq = int(raw.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
    raw.close()
    assert len(rows) == 13 and {r[2] for r in rows} == {1, 2, 3}
    # a site with a second file sink (one per monitoring system) opens it
    with Buffer(path, sinks=("files", "mqtt", "files.shfz")) as buf:
        assert buf.sinks == {"mqtt": 1, "files": 2, "files.shfz": 4}
        for name, bit in (("mqtt", 1), ("files", 2)):
            owed = [r for r in rows if r[2] & bit]
            assert buf.backlog(name) == len(owed)
            assert buf.peek(name, 100) == [Row(q, t, tm, b) for q, t, _, tm, b in owed]
        assert buf.peek("files.shfz", 100) == [] and buf.backlog("files.shfz") == 0
        assert_counts_exact(buf.db)
        assert buf.append([("CDSS", buf.mask("files.shfz"), time.time(), b"[]")]) == [next_seq]
        buf.ack("mqtt", [r[0] for r in rows])
        buf.ack("files", [r[0] for r in rows])
        assert buf.stats()["rows"] == 1 and buf.backlog("files.shfz") == 1
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")} >= \
        {"pending_1", "pending_2", "pending_4"}
    db.close()
