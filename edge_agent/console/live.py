"""Live updates: server-sent events carrying the page sections that changed.

`Hub(render)` keeps, per page key (`overview`, `device:NAME`, `point:DEV/ID`,
`warnings`, `warning:ID`), the subscribers and the sections last sent.  While
at least one browser is connected, one task renders each watched page once a
second (sooner when `wake()` is called: the alarm book changed) and sends the
sections whose HTML changed; with no browser connected nothing runs.  A new
subscriber first gets every section, so nothing that changed between its page
load and its subscription is missed.

Event: `event: sections` / `data: {"name": "<html>", ...}`; the point page
also gets `event: sample` / `data: {"t": epoch, "v": value}` for its chart.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import orjson
from aiohttp import web

log = logging.getLogger("edge_agent.console")

TICK = 1.0
KEEPALIVE = 15.0
QUEUE = 32          # events a slow browser may lag behind before it is dropped (it reconnects and catches up)


def encode(event: str, data) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Hub:
    def __init__(self, render: Callable[[str], dict | None], sample: Callable[[str], dict | None]):
        self.render = render             # page key -> {section: html}, or None when the page no longer exists
        self.sample = sample             # page key -> {"t", "v"} for chart pages, else None
        self._subs: dict[str, set[asyncio.Queue]] = {}
        self._last: dict[str, dict[str, str]] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.renders = 0                 # for the bench: how many page renders ran, and their CPU seconds
        self.cpu = 0.0

    @property
    def browsers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def wake(self) -> None:
        self._wake.set()

    async def stream(self, request: web.Request, key: str) -> web.StreamResponse:
        sections = self.render(key)
        if sections is None:
            raise web.HTTPNotFound(text="no such page\n")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue(QUEUE)
        self._subs.setdefault(key, set()).add(q)
        self._last.setdefault(key, sections)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-live")
        try:
            await resp.write(b"retry: 2000\n\n" + encode("sections", sections))
            while True:
                try:
                    data = await asyncio.wait_for(q.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    data = b": keepalive\n\n"
                if data is None:          # the console is closing
                    break
                await resp.write(data)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del self._subs[key]
                    self._last.pop(key, None)
        return resp

    async def _run(self) -> None:
        next_tick = time.monotonic()
        while self._subs and not self._closed:
            next_tick += TICK
            delay = next_tick - time.monotonic()
            if delay < 0:                 # fell behind (a slow render): do not try to catch up
                next_tick, delay = time.monotonic(), 0
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            t0 = time.thread_time()
            for key in list(self._subs):
                try:
                    self._push(key)
                except Exception:          # a bug in one page must not stop the others' updates
                    log.exception("console: live update of %s failed", key)
            self.cpu += time.thread_time() - t0

    def _push(self, key: str) -> None:
        subs = self._subs.get(key)
        if not subs:
            return
        sections = self.render(key)
        self.renders += 1
        events = b""
        if sections is not None:
            last = self._last.get(key, {})
            changed = {k: v for k, v in sections.items() if last.get(k) != v}
            if changed:
                self._last[key] = sections
                events += encode("sections", changed)
        s = self.sample(key)
        if s is not None:
            events += encode("sample", s)
        if not events:
            return
        for q in list(subs):
            try:
                q.put_nowait(events)
            except asyncio.QueueFull:     # a browser that stopped reading: end its stream, it reconnects
                subs.discard(q)
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)

    async def close(self) -> None:
        self._closed = True
        for subs in self._subs.values():
            for q in subs:
                while q.full():
                    q.get_nowait()
                q.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
