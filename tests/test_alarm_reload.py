"""A reload that removes a point while its alarm is open: the alarm still gets its end.

Through the real agent and a simulated Modbus TCP device over a real socket: point A
is in the old ladder's alarm (the kernel's YCBJ 001), point G in a graded red alarm (the
book's YCBJ). A reload drops both points; both alarms end: YCBJ end records with the
points' codes (encoded with the configuration they were open in), the book's alarms
closed, and a restart on the same folder does not bring them back.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from conftest import free_port
from edge_agent.agent import Agent
from edge_agent.config import load_site
from edge_agent.drivers import sim
from edge_agent.drivers.sim.harness import site_from_yaml
from test_kernel import K, T0, edges, frame, thresholds  # noqa: F401 (K is a fixture)
from test_reload import edit_site, until

pytestmark = pytest.mark.timeout(60)


class RecordingAgent(Agent):
    """The real agent, keeping (type, record) of every message it commits."""

    def __init__(self, site):
        self.committed: list[tuple[str, dict]] = []
        super().__init__(site)

    def commit(self) -> None:
        for typ, _, _, body in self.pending:
            if typ in ("YCBJ", "alarm"):
                self.committed += [(typ, r) for r in orjson.loads(body)]
        super().commit()


def test_a_point_removed_by_a_reload_ends_its_open_alarms(tmp_path):
    port = free_port()
    site = site_from_yaml(f"""\
site: {{mine_code: "140211001234", gateway: gw-r}}
buffer: {{path: b.sqlite}}
metrics: {{enabled: false}}
console: {{enabled: false}}
forward: {{files: {{dir: outbox}}}}
devices:
  - name: gas-1
    driver: modbus-tcp
    host: 127.0.0.1
    port: {port}
    poll: 200ms
    timeout: 500ms
    points:
      - {{id: A, sensor: "0001", address: "hr:0", type: float32, alarm: {{high: 1.0, high_clear: 0.9}}}}
      - {{id: G, sensor: "0007", address: "hr:2", type: float32, levels: {{red: {{high: 4.5}}}}}}
      - {{id: K, sensor: "0007", address: "hr:4", type: float32}}
""", tmp_path)

    async def scenario():
        server = await sim.serve(site)
        server.pin("gas-1", {"A": 1.5, "G": 5.0, "K": 1.0})
        try:
            agent = RecordingAgent(site)
            a_code, g_code = (next(p.code for p in agent.catalog.points if p.id == pid) for pid in ("A", "G"))
            stop = asyncio.Event()
            run = asyncio.create_task(agent.run(stop))
            try:
                book = agent.alarms.book
                await until(lambda: len(book.list("open")) == 2, 10, "both alarms open")
                opened = {a["point"]: a["id"] for a in book.list("open")}
                path = Path(site.source)
                edit_site(path, lambda d: d["devices"][0].update(points=d["devices"][0]["points"][2:]))
                agent.committed.clear()
                await agent.reload(load_site(path))
                n = agent.frames
                await until(lambda: agent.frames >= n + 3, 10, "frames after the reload")
                after = list(agent.committed)
                still_open = book.list("open")
                closed = {a["id"]: a for a in book.list("closed")}
            finally:
                stop.set()
                await run
            again = Agent(load_site(path))          # a restart on the same folder
            reopened = again.alarms.book.list("open")
            again.alarms.book.close()
            again.buffer.close()
            return a_code, g_code, opened, after, still_open, closed, reopened
        finally:
            await server.stop()

    a_code, g_code, opened, after, still_open, closed, reopened = asyncio.run(scenario())
    ends = sorted((r["point_code"], r["anomaly"], bool(r["end"])) for t, r in after if t == "YCBJ")
    # the kernel's alarm of A, the book's red alarm of G: each ends, nothing begins
    assert ends == sorted([(a_code, "001", True), (g_code, "001", True)]), after
    assert still_open == [] and reopened == []
    assert set(opened.values()) <= set(closed), closed
    assert all(closed[i]["end"] is not None for i in opened.values())


def test_end_alarms_ends_every_open_alarm_of_the_given_points(K):
    k = K(3, thresholds(3, alarm_high=1.0, alarm_high_clear=0.9, cutoff_high=1.5, cutoff_restore=1.0,
                        warn_high=0.8))
    k.process(frame(T0 + 1, [1.6, 1.2, 1.6]))
    begun = edges(k.take_events())
    assert len(begun) == 8                                 # p0, p2: warn, alarm, cut-off; p1: warn, alarm
    k.end_alarms([0, 1])
    ended = k.take_events()
    assert sorted((e.point, e.anomaly, e.begin, e.end) for e in ended) == [
        (0, "001", False, T0 + 1), (0, "002", False, T0 + 1), (0, "009", False, T0 + 1),
        (1, "001", False, T0 + 1), (1, "009", False, T0 + 1)]
    assert list(k.status)[:2] == [0, 0] and k.status[2] & 3
    k.end_alarms([0, 1])                                   # nothing open any more: nothing again
    assert k.take_events() == []
