"""The file sink over a real SQLite buffer: rows -> spec files, acks after rename, disk errors."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.buffer import Buffer
from edge_agent.config import load_site
from edge_agent.forward.files_spec import FilesCfg
from edge_agent.forward.files import FileSink
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from edge_agent.profile.encode import Encoder
from test_textfile import GOLDEN, T0, TZ, check_file

FILES = 2   # the buffer's sink bit for "files"


@pytest.fixture
def parts(tmp_path):
    site = load_site(GOLDEN / "site.yaml")
    profile = load_profile(site.profile)
    enc = Encoder(site, Catalog(site, profile), profile, tz=TZ)
    buf = Buffer(tmp_path / "buffer.sqlite")
    yield site, profile, enc, buf
    buf.close()


async def async_until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run_sink(sink: FileSink, body) -> None:
    """Run the sink while `body(sink)` (a coroutine function) runs; then cancel it."""
    async def main():
        async with sink:
            task = asyncio.create_task(sink.run())
            try:
                await body(sink)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


def drain_all(parts, out: Path, rows) -> FileSink:
    """Append `rows`, run a fresh sink until the buffer has nothing left for it; return the sink."""
    site, profile, enc, buf = parts
    buf.append(rows)

    async def body(sink):
        await async_until(lambda: buf.backlog("files") == 0)

    sink = FileSink(FilesCfg(dir=str(out)), site, profile, buf, asyncio.Event(), out, tz=TZ, idle=60)
    run_sink(sink, body)
    return sink


def messages(enc):
    return [("CDDY", FILES, T0, enc.cddy(T0)), ("FZDY", FILES, T0, enc.fzdy(T0)),
            ("FZSS", FILES, T0, enc.fzss([(0, 1), (1, 9)], T0)),
            ("CDSS", FILES, T0 + 20, enc.cdss([0, 1, 2], [0.5, 3.0, 20.9], [0, 0, 0], [T0 + 19] * 3, T0 + 20))]


def test_rows_become_files_and_are_acked_after_rename(tmp_path, parts):
    site, profile, enc, buf = parts
    out = tmp_path / "outbox"
    buf.append(messages(enc))

    async def body(sink):
        # a wake, not the idle timeout (60 s here), brings the next row out
        await async_until(lambda: buf.backlog("files") == 0)
        buf.append([("CDSS", FILES, T0 + 40, enc.cdss([1], [0.0, 4.0], [0, 0], [0, T0 + 39], T0 + 40))])
        sink.wake.set()
        await async_until(lambda: buf.backlog("files") == 0, timeout=5)

    run_sink(FileSink(FilesCfg(dir=str(out)), site, profile, buf, asyncio.Event(), out, tz=TZ, idle=60), body)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["140211001234_CDDY_20261129100020.txt", "140211001234_CDSS_20261129100040.txt",
                     "140211001234_CDSS_20261129100100.txt", "140211001234_FZDY_20261129100020.txt",
                     "140211001234_FZSS_20261129100020.txt"]
    for p in out.iterdir():
        check_file(p, profile)
    # written in seq order: strictly increasing mtimes (the FTP push keeps that order)
    order = [p.name.split("_")[1] for p in sorted(out.iterdir(), key=lambda p: p.stat().st_mtime_ns)]
    assert order == ["CDDY", "FZDY", "FZSS", "CDSS", "CDSS"]
    assert buf.peek("files", 10) == []


def test_disk_error_logs_once_acks_nothing_and_recovers(tmp_path, parts, caplog):
    site, profile, enc, buf = parts
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    out = blocker / "outbox"                   # mkdir fails: NotADirectoryError, a real OSError
    buf.append(messages(enc))
    caplog.set_level(logging.INFO, logger="edge_agent.forward.files")

    async def body(sink):
        await async_until(lambda: sink.write_errors >= 3)
        assert buf.backlog("files") == 4, "nothing acknowledged while the outbox is unwritable"
        blocker.unlink()                        # the operator frees the path
        await async_until(lambda: buf.backlog("files") == 0)

    sink = FileSink(FilesCfg(dir=str(out)), site, profile, buf, asyncio.Event(), out, tz=TZ, idle=60,
                    backoff=(0.02, 0.1))
    run_sink(sink, body)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert str(out) in errors[0].getMessage() and "Not a directory" in errors[0].getMessage()
    assert any("writing spec files again" in r.getMessage() for r in caplog.records)
    assert len(list(out.iterdir())) == 4


def test_a_row_that_cannot_be_a_file_is_dropped_not_blocking(tmp_path, parts, caplog):
    from edge_agent import registry
    enc = parts[2]
    out = tmp_path / "outbox"
    # a type the registry knows (a plug-in's) and this profile has no layout for
    registry.register_record_type(registry.RecordType("XXXX", ("time",), priority=1, cadence="event",
                                                      producer=None))
    try:
        sink = drain_all(parts, out, [("CDSS", FILES, T0, b"not json"), ("XXXX", FILES, T0, b"[]")]
                         + messages(enc)[:1])
    finally:
        registry.unregister("XXXX")
    assert sink.rows_rejected == 2 and sink.files_written == 1
    assert [p.name.split("_")[1] for p in out.iterdir()] == ["CDDY"]
    assert sum("seq 1 (CDSS)" in r.getMessage() for r in caplog.records) == 1


def test_restart_after_crash_before_ack_does_not_duplicate(tmp_path, parts):
    """A file renamed but not acked (crash) is written again identically: no second file."""
    enc = parts[2]
    out = tmp_path / "outbox"
    assert drain_all(parts, out, messages(enc)).files_written == 4
    before = sorted(p.name for p in out.iterdir())
    # the same rows come again, as after a crash between rename and ack, to a new sink
    sink = drain_all(parts, out, messages(enc))
    assert sorted(p.name for p in out.iterdir()) == before
    assert sink.files_written == 0
