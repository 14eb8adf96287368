"""The alarm book inside the agent: where its level changes come from and where its records go.

    alarms = AgentAlarms(agent)          # after the agent's buffer and sinks exist
    alarms.after_frame(frame, kernel, changes)  # once per frame: the kernel's level changes (rolled up)
    alarms.bind(agent)                   # after a reload (new catalogue, encoder, maybe kernel)
    alarms.add_routes(web.app)           # the local API on the agent's web server
    async with alarms: ...               # deadlines run while entered; the book file is closed on exit

Records go into the agent's pending batch and are committed at once (the
book hands them over only after its own file has them): YCBJ to every sink,
`alarm`, `disposal` and `escalation` to the MQTT uplink only.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3

from edge_agent.alarms.book import AlarmBook
from edge_agent.alarms.records import MQTT_ONLY
from edge_agent.alarms.spec import alarm_spec
from edge_agent.errors import EdgeAgentError
from edge_agent.profile.encode import EMPTY

log = logging.getLogger("edge_agent.alarms")

BOOK_FILE = "alarms.sqlite"


def book_path(site):
    """`alarms.path`, or alarms.sqlite beside the buffer."""
    cfg = site.alarms
    return site.path(cfg.path) if cfg.path else site.path(site.buffer.path).parent / BOOK_FILE


class AgentAlarms:
    def __init__(self, agent):
        self.agent = agent
        site = agent.site
        path = book_path(site)
        try:
            self.book = AlarmBook(path, alarm_spec(agent.profile), deadlines=dict(site.alarms.deadlines),
                                  emit=self._emit)
        except (sqlite3.Error, OSError) as exc:
            raise EdgeAgentError(f"alarms.path: cannot open the alarm book {path}: {exc}; check that its folder "
                                 "is writable and has free space") from None
        self._task: asyncio.Task | None = None
        self.bind(agent)
        self.book.resend()

    def bind(self, agent) -> None:
        self.kernel = agent.kernel
        self.book.bind(agent.catalog, agent.encoder, agent.site)
        if agent.site.systems:      # each point's alarms through its own system (encoder, profile, rows)
            views = agent.pipeline.view_of_device
            points = agent.catalog.points
            self.book.records.view_of = lambda i: views[points[i].device]

    def _emit(self, records) -> None:
        a = self.agent
        every, mqtt = a.routes.all, a.mask_of_kind("mqtt")
        for typ, t, body in records:
            mask = mqtt if typ in MQTT_ONLY else every
            if a.site.systems and "/" in typ:        # `shfz/CGKCDYC`: that system's sinks
                mask = a.system_routes[typ.partition("/")[0]].all
            if mask and body != EMPTY:     # EMPTY: a point of a local code the profile does not send
                a.pending.append((typ, mask, t, body))
            if typ in MQTT_ONLY:            # a system's own alarm types made from the book's records
                for view in a.pipeline.views:
                    for rt in view.book_types:
                        own = rt.produce(view, t, (typ, body))
                        if own is not None:
                            a.pending.append((view.system.type_of(rt.code), view.routes.all, t, own))
        a.commit()

    def after_frame(self, frame, kernel, changes=None) -> None:
        """The frame's level changes to the book, then its samples of points in alarm.  The kernel
        reports every change of a point's level, the old ladder's too (rule "legacy", coloured by the
        profile's `legacy_levels`); `changes`: already drained from it (and rolled up) by the pipeline."""
        self.kernel = kernel
        if changes is None:
            changes = kernel.take_level_changes()
        if changes:
            self.book.apply(changes, kernel.value)
        if self.book.watch:
            self.book.observe(frame, kernel.value, kernel.status, kernel.time, self._level_of)

    def _level_of(self, point: int) -> int:
        return self.kernel.level[point]

    def token(self) -> str:
        from edge_agent.secrets import read_secret
        site = self.agent.site
        return read_secret(site.alarms.token_file, field="alarms.token_file", site=site).reveal()

    def add_routes(self, app) -> None:
        from edge_agent.alarms.api import add_routes
        add_routes(app, self.book, self.token)

    def metrics(self) -> dict:
        return self.book.metrics()

    async def __aenter__(self) -> "AgentAlarms":
        self._task = asyncio.create_task(self.book.run(), name="alarms")
        return self

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.book.close()
