"""The spec-file sink: buffered messages -> text files in the outbox (-> FTP/FTPS push).

    sink = FileSink(cfg, site, profile, buffer, wake, directory)
    async with sink:
        await sink.run()          # until cancelled

`run()` peeks the rows the `files` sink has not acknowledged, oldest first,
writes each row as one spec text file (`textfile.write_file`: temp name,
fsync, rename), and acknowledges a row only after its file was renamed into
place.  It then waits for `wake` (set by the pipeline after each append) or
`idle` seconds.  When the outbox cannot be written (full or read-only disk)
it logs one line, acknowledges nothing, and retries with exponential backoff;
it logs again when writing works again.  A row that can never become a file
(a body that is not a JSON array of records, an unknown type) is logged with
its seq and dropped, so it cannot block the queue.

When `cfg.upload` is set, the sink also runs an `FtpPush` over the same
folder, woken after each file written.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson

from edge_agent import clock
from edge_agent.backoff import Backoff
from edge_agent.forward.files_spec import FilesCfg
from edge_agent.fsutil import make_dirs
from edge_agent.profile.tables import Profile
from edge_agent.profile.textfile import write_file
from edge_agent.profile.timefmt import zone_of

log = logging.getLogger("edge_agent.forward.files")

class FileSink:
    """Writes buffered messages as spec files into `directory`; see the module docstring.

    `name` is its sink name in the buffer (`files` unless several file sinks are configured)."""

    def __init__(self, cfg: FilesCfg, site, profile: Profile, buffer, wake: asyncio.Event, directory: Path, *,
                 tz=None, batch: int = 64, idle: float = 5.0, backoff: tuple[float, float] = (0.5, 30.0),
                 name: str = "files"):
        self.name = name
        self.cfg = cfg
        self.site = site
        self.profile = profile
        self.buffer = buffer
        self.wake = wake
        self.directory = Path(directory)
        self.tz = tz if tz is not None else zone_of(site, profile)
        self.batch = batch
        self.idle = idle
        self.backoff = backoff
        self.written = asyncio.Event()      # set after each file renamed into place (wakes the push)
        self.push = None
        if cfg.upload:
            from edge_agent.forward.ftp import FtpPush
            self.push = FtpPush(cfg, self.directory, site=site, wake=self.written)
        # counters, for metrics and status
        self.files_written = 0
        self.rows_rejected = 0
        self.write_errors = 0
        self.failing: str | None = None     # the current disk error, None while writing works
        self._last_second: dict[str, int] = {}
        self._last_mtime = 0

    @property
    def counters(self) -> dict:
        return {"files_written": self.files_written, "rows_rejected": self.rows_rejected,
                "write_errors": self.write_errors}

    @property
    def connected(self) -> bool:
        """True while the outbox takes files."""
        return self.failing is None

    @property
    def trouble(self) -> str | None:
        return None if self.failing is None else f"outbox not writable: {self.failing}"

    def stats(self) -> dict:
        """Counters for metrics and status: files written, rows dropped, disk errors, the current
        error (None when healthy), and the push's uploads/failures/waiting files when uploading."""
        out = {"files_written": self.files_written, "rows_rejected": self.rows_rejected,
               "write_errors": self.write_errors, "failing": self.failing}
        if self.push is not None:
            from edge_agent.forward.ftp import pending_files
            try:
                waiting = len(pending_files(self.directory))
            except OSError:
                waiting = None
            out["upload"] = {"uploaded": self.push.uploaded, "failures": self.push.failures,
                             "failing": self.push.failing, "waiting": waiting}
        return out

    async def __aenter__(self) -> "FileSink":
        if self.push is not None:
            await self.push.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        if self.push is not None:
            await self.push.__aexit__(*exc)

    async def run(self) -> None:
        push_task = asyncio.create_task(self.push.run(), name="sink:ftp") if self.push is not None else None
        retry = Backoff(*self.backoff)
        try:
            while True:
                self.wake.clear()
                try:
                    n = await self.drain()
                except OSError as exc:
                    self.write_errors += 1
                    reason = exc.strerror or str(exc)
                    if self.failing != reason:
                        log.error("outbox %s: cannot write spec files (%s); nothing acknowledged, retrying "
                                  "with backoff; free space or fix permissions", self.directory, reason)
                    self.failing = reason
                    await asyncio.sleep(retry.next())
                    continue
                if self.failing is not None:
                    log.warning("outbox %s: writing spec files again", self.directory)
                    self.failing = None
                retry.reset()
                if n < self.batch:
                    await self._wait()
        finally:
            if push_task is not None:
                push_task.cancel()
                await asyncio.gather(push_task, return_exceptions=True)

    async def _wait(self) -> None:
        try:
            await asyncio.wait_for(self.wake.wait(), self.idle)
        except asyncio.TimeoutError:
            pass

    async def drain(self) -> int:
        """Write and acknowledge one batch of rows; return how many rows it handled.

        Rows written before a disk error are acknowledged; the error then propagates (OSError)."""
        rows = self.buffer.peek(self.name, self.batch)
        if not rows:
            return 0
        done: list[int] = []
        try:
            await asyncio.to_thread(self._write_rows, rows, done)
        finally:
            # ack in the loop's thread: what was renamed into place, even if a later row failed
            if done:
                self.buffer.ack(self.name, done)
                self.written.set()
        return len(rows)

    def _write_rows(self, rows, done: list[int]) -> None:
        """In a worker thread: one file per row, in seq order; appends each finished seq to `done`."""
        make_dirs(self.directory)       # durably: a row is acked only once its file and every folder are
        for row in rows:
            try:
                records = orjson.loads(row.body)
                if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                    raise ValueError("body is not a JSON array of records")
                code = row.type.rpartition("/")[2]       # `shfz/CGKCDSS`: this system's CGKCDSS
                if code not in self.profile.records:
                    raise ValueError(f"type {row.type!r} has no layout in profile {self.profile.name}")
                # strictly increasing stamps keep the push's upload order equal to the write order
                mtime = max(clock.now_ns(), self._last_mtime + 1)
                path, second, wrote = write_file(self.profile, self.site, code, row.time, records,
                                                 self.directory, tz=self.tz,
                                                 not_before=self._next_second(row.type), mtime_ns=mtime, seq=row.seq,
                                                 clock=clock.now)
            except (orjson.JSONDecodeError, ValueError) as exc:
                self.rows_rejected += 1
                log.error("buffer row seq %d (%s) cannot become a spec file and is dropped: %s",
                          row.seq, row.type, exc)
                done.append(row.seq)
                continue
            if wrote:
                self._last_mtime = mtime
                self.files_written += 1
            self._last_second[row.type] = max(second, self._last_second.get(row.type, second))
            done.append(row.seq)

    def _next_second(self, type: str) -> int | None:
        last = self._last_second.get(type)
        return None if last is None else last + 1
