"""The seq mark: a lost, deleted or unreadable buffer never makes seq repeat."""
from __future__ import annotations

import logging
import time

from edge_agent.buffer import Buffer
from edge_agent.buffer.seqmark import RESERVE, mark_path, read_mark

from e2e import Proc, Subscriber, last_seq, make_site, wait_for

ALL_SINKS = 3                 # Buffer()'s default sinks, mqtt and files


def fill(buf: Buffer, n: int) -> list[int]:
    return buf.append([("CDSS", ALL_SINKS, time.time(), b"[]")] * n)


def handed_out(buf: Buffer, sink: str = "mqtt") -> list[int]:
    return [r.seq for r in buf.peek(sink, 10_000)]


def remove_buffer(path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def handed_out_then_lost(path) -> list[int]:
    """A buffer that handed 30 messages to a sink, then vanished (the mark beside it stays)."""
    with Buffer(path) as buf:
        fill(buf, 30)
        seen = handed_out(buf)
    remove_buffer(path)
    return seen


def test_the_mark_is_raised_before_a_sink_sees_a_seq_in_blocks(tmp_path):
    path = tmp_path / "b.sqlite"
    with Buffer(path) as buf:
        fill(buf, 10)
        assert read_mark(mark_path(path)) is None          # nothing handed out yet: no mark
        assert handed_out(buf) == list(range(1, 11))
        mark = read_mark(mark_path(path))
        assert mark == 11 + RESERVE
        stamp = mark_path(path).stat().st_mtime_ns
        fill(buf, RESERVE - 1)
        handed_out(buf, "files")
        assert mark_path(path).stat().st_mtime_ns == stamp  # inside the block: no write
        fill(buf, 5)
        seqs = handed_out(buf)
        assert read_mark(mark_path(path)) > max(seqs)      # raised before those went out


def test_a_deleted_buffer_continues_above_every_seq_handed_out(tmp_path, caplog):
    path = tmp_path / "b.sqlite"
    seen = handed_out_then_lost(path)
    with caplog.at_level(logging.INFO, logger="edge_agent.buffer"):
        buf = Buffer(path)
    [line] = [r.getMessage() for r in caplog.records]
    assert "seq continues at" in line and "never a repeat" in line
    assert buf.next_seq > max(seen)
    assert fill(buf, 1)[0] > max(seen)
    buf.close()
    with Buffer(path) as buf:                              # the new file has its own history now: no jump
        assert buf.next_seq == buf.db.execute("SELECT max(seq) FROM messages").fetchone()[0] + 1


def test_a_corrupt_buffer_whose_own_seq_is_unreadable_continues_above_the_mark(tmp_path, caplog):
    path = tmp_path / "b.sqlite"
    seen = handed_out_then_lost(path)
    path.write_bytes(b"\x13 not a database \x00" * 1000)    # nothing readable, not even meta
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        buf = Buffer(path)
    [line] = [r.getMessage() for r in caplog.records]
    assert "is corrupt" in line and f"seq continues at {buf.next_seq}" in line
    assert buf.next_seq > max(seen)
    buf.close()


def test_a_new_buffer_with_an_unreadable_mark_says_seq_starts_at_1(tmp_path, caplog):
    path = tmp_path / "b.sqlite"
    mark_path(path).write_bytes(b"\xff\xfe garbage")
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"):
        buf = Buffer(path)
    [line] = [r.getMessage() for r in caplog.records]
    assert "unreadable" in line and "seq starts at 1" in line
    fill(buf, 3)
    assert handed_out(buf) == [1, 2, 3]
    assert read_mark(mark_path(path)) == 4 + RESERVE     # rewritten at the first hand-out
    buf.close()


def test_a_mark_the_disk_refuses_does_not_stop_delivery(tmp_path, caplog):
    path = tmp_path / "b.sqlite"
    blocker = tmp_path / f".{mark_path(path).name}.tmp"
    blocker.mkdir()                                       # the temp name is taken: the write fails
    with caplog.at_level(logging.WARNING, logger="edge_agent.buffer"), Buffer(path, retry_every=0) as buf:
        fill(buf, 5)
        assert handed_out(buf) == [1, 2, 3, 4, 5]
        fill(buf, 5)
        assert handed_out(buf, "files") == list(range(1, 11))
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "seq mark" in errors[0] and "delivering anyway" in errors[0]
        blocker.rmdir()
        fill(buf, 1)
        handed_out(buf)
        assert read_mark(mark_path(path)) == 12 + RESERVE
        assert any("written again" in r.getMessage() for r in caplog.records)


def test_the_agent_never_reuses_a_seq_after_its_buffer_was_deleted(tmp_path, mosquitto, sim):
    """What the consumer sees: the second run's seqs start above the first run's, with a gap."""
    site = make_site(tmp_path, sim, mosquitto.url, realtime_every="1s")
    sub = Subscriber(mosquitto.port).start()
    first = Proc(["run", "-c", str(site)], tmp_path / "agent1.log")
    try:
        wait_for(lambda: len(sub.seqs()) >= 5, 40, "messages from the first run")
    finally:
        assert first.stop() == 0, first.text()[-3000:]
    n1 = last_seq(first.text())
    wait_for(lambda: set(range(1, n1 + 1)) <= set(sub.seqs()), 20, f"every seq up to {n1}")
    remove_buffer(tmp_path / "buffer.sqlite")
    count = len(sub.payloads())
    second = Proc(["run", "-c", str(site)], tmp_path / "agent2.log")
    try:
        wait_for(lambda: len([p for p in sub.payloads()[count:] if "seq" in p]) >= 5, 40,
                 "messages from the second run")
    finally:
        assert second.stop() == 0, second.text()[-3000:]
    sub.stop()
    again = [p["seq"] for p in sub.payloads()[count:] if "seq" in p]
    assert min(again) > n1, f"the second run reused seqs {sorted(s for s in again if s <= n1)[:10]}"
    assert [ln for ln in second.text().splitlines() if "seq continues at" in ln and "never a repeat" in ln]
