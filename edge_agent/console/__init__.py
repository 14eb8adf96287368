"""The operator console: web pages served by the agent itself, for the people at the mine.

    web = WebServer(site.console.listen)
    console = Console(web, agent)          # adds its routes to web.app
    async with web, console: ...           # console: trend sampler and live updates run

Pages (Chinese first, with English): overview, a device's points, a point's
trend with its thresholds, the warnings lists with ack and disposal, the
effective configuration.  Live updates are server-sent events.  Assets are
in the package (static/); nothing is fetched from the internet.  The console
reads the agent only through `view.View`; writes go to the alarm book.
"""
from __future__ import annotations

import asyncio
import logging
import time

from edge_agent.console.auth import LoginLimiter, Sessions, parse_users
from edge_agent.console.history import Changes, History
from edge_agent.console.view import View
from edge_agent.errors import EdgeAgentError

log = logging.getLogger("edge_agent.console")

SAMPLE_EVERY = 1.0

__all__ = ["Console"]


class Console:
    def __init__(self, web, agent):
        from edge_agent.console.app import Routes       # aiohttp: imported only when a console runs
        from edge_agent.console.live import Hub

        self.web = web
        self.view = View(agent)
        self.cfg = agent.site.console
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.hub = Hub(self._render, self._sample)
        self.history: History | None = None
        self.changes: Changes | None = None
        self._catalog = None
        self._tasks: list[asyncio.Task] = []
        self.samples = 0
        self.sample_cpu = 0.0            # CPU seconds spent sampling (bench/console.py reads the closing line)
        Routes(self).add_to(web.app)

    @property
    def can_login(self) -> bool:
        return bool(self.cfg is not None and self.cfg.password_file)

    def read_users(self) -> dict[str, str]:
        """The password file's people (re-read at every login): name -> scrypt hash."""
        from edge_agent.secrets import read_secret, resolve
        site = self.view.site
        secret = read_secret(self.cfg.password_file, field="console.password_file", site=site)
        return parse_users(secret.reveal(), str(resolve(self.cfg.password_file, site)))

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> "Console":
        self._open_history()
        self._tasks.append(asyncio.create_task(self._sampler(), name="console-sampler"))
        book = self.view.book
        if book is not None and getattr(book, "changed", None) is not None:
            self._tasks.append(asyncio.create_task(self._watch_book(book), name="console-alarms"))
        log.info("console on %s", self.web.url)
        return self

    async def __aexit__(self, *exc) -> None:
        log.info("console: stopped; cpu in the loop: sampler %.3f s over %d samples, live pages %.3f s over %d "
                 "renders", self.sample_cpu, self.samples, self.hub.cpu, self.hub.renders)
        await self.hub.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.history is not None:
            self.history.close()
            self.history = None

    def _open_history(self) -> None:
        if self.history is not None:
            self.history.close()
        self._catalog = self.view.catalog
        codes = self.view.point_codes()
        self.changes = Changes(len(codes))
        path = self.view.history_path()
        try:
            self.history = History(path, codes)
        except OSError as exc:
            self.history = None
            log.warning("console: cannot keep trend history in %s (%s); the point pages show live values only",
                        path, exc.strerror or exc)

    async def _sampler(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep(SAMPLE_EVERY - now % SAMPLE_EVERY)
            try:
                t0 = time.thread_time()
                self.sample(time.time())
                self.sample_cpu += time.thread_time() - t0
            except OSError as exc:
                log.warning("console: trend history stopped: %s", exc.strerror or exc)
                self.history.close()
                self.history = None

    def sample(self, now: float) -> None:
        """Once a second: every point's value into the trend history and the last-change times."""
        if self.view.catalog is not self._catalog:      # a reload changed the points
            self._open_history()
        values, status = self.view.values(), self.view.statuses()
        if self.history is not None:
            self.history.sample(values, now, self.view.offline_ranges())
        self.changes.update(values, status, now)
        self.samples += 1

    async def _watch_book(self, book) -> None:
        while True:
            await book.changed.wait()
            book.changed.clear()
            self.hub.wake()

    # -------------------------------------------------------------- live pages

    def _render(self, key: str) -> dict | None:
        from edge_agent.console import pages, warnings

        view = self.view
        kind, _, arg = key.partition(":")
        if kind == "overview":
            return pages.overview(view)
        if kind == "device":
            di = view.device_index(arg)
            return None if di is None else pages.device(view, di, self.changes)
        if kind == "point":
            rp = view.find_point(*arg.split("/", 1)) if "/" in arg else None
            return None if rp is None else pages.point(view, rp, self.changes)
        if kind == "warnings":
            return warnings.lists(view.book, view.now())
        if kind == "warning" and view.book is not None:
            try:
                return warnings.detail(view.book.get(int(arg)), view.now())
            except (ValueError, EdgeAgentError):      # unknown warning
                return None
        return None

    def _sample(self, key: str) -> dict | None:
        if not key.startswith("point:"):
            return None
        arg = key[6:]
        rp = self.view.find_point(*arg.split("/", 1)) if "/" in arg else None
        if rp is None:
            return None
        st = self.view.point_state(rp)
        return {"t": round(self.view.now(), 3), "v": st["value"], "level": st["level"]}
