"""The seq mark: a small fsynced file beside the buffer, so a lost buffer never makes seq repeat.

`<buffer>.seq` (e.g. `buffer.sqlite.seq`) holds one number N: no message
with a seq >= N has ever been handed to a sink.  The buffer raises it, a
block of `RESERVE` seqs at a time, before `peek` hands out a seq at or above
it, so it costs one small durable write per `RESERVE` messages.

A buffer file that knows no seq history (deleted, lost at a power cut with
its folder, or a corrupt one moved aside whose own next seq is unreadable)
continues at N: a consumer sees a gap (the lost messages), never a repeat
with different content.  The file is written whole or not at all
(`fsutil.replace_file`), so a cut leaves the old or the new number.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from edge_agent.fsutil import replace_file

log = logging.getLogger("edge_agent.buffer")

RESERVE = 1000


def mark_path(buffer_path: Path) -> Path:
    return buffer_path.with_name(buffer_path.name + ".seq")


def read_mark(path: Path) -> int | None:
    """The number in the mark file; None when there is none.  ValueError: the file is not a mark."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise ValueError("not a number") from exc
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not a seq")
    return value


def write_mark(path: Path, value: int) -> None:
    """Durably record that no seq >= value has reached a sink.  OSError propagates."""
    replace_file(path, f"{value}\n".encode("ascii"))


class SeqMark:
    """The buffer's side of the mark: `reserved` (no seq >= it has reached a sink) and `reserve()`."""

    def __init__(self, buffer_path: Path, retry_every: float = 1.0):
        self.path = mark_path(buffer_path)
        self.retry_every = retry_every
        try:
            self.reserved = read_mark(self.path) or 0
        except (OSError, ValueError):
            self.reserved = 0               # rewritten at the first reservation
        self.failing: str | None = None
        self._retry_at = 0.0

    def reserve(self, above: int) -> None:
        """Record durably that seqs below `above` + RESERVE may reach a sink, before one does.

        A disk that refuses the mark does not stop delivery (the buffer itself is still
        there): one line, and a retry every `retry_every` seconds."""
        if self.failing is not None and time.monotonic() < self._retry_at:
            return
        value = above + RESERVE
        try:
            write_mark(self.path, value)
        except OSError as exc:
            self._retry_at = time.monotonic() + self.retry_every
            reason = exc.strerror or str(exc)
            if self.failing is None:
                log.error("buffer: cannot write the seq mark %s (%s); delivering anyway, but should the buffer "
                          "file be lost too, seq could repeat; free space or fix the disk", self.path, reason)
            self.failing = reason
            return
        if self.failing is not None:
            log.warning("buffer: seq mark %s written again", self.path)
            self.failing = None
        self.reserved = value
